//! The span-keeping walk over `toml`'s document tree: [`Reader`] turns a value's
//! place in the text into a line number, so that every [`ConfigError`] names the
//! file, the line, the dotted key and the bad value. It reads values of the
//! config's general kinds (strings, paths, counts, sizes, durations); what a
//! particular key means is for the section readers.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ConfigError;
use super::units::{parse_duration, parse_size};

/// Turns spans into line numbers and builds errors that name the file.
pub(super) struct Reader<'a> {
    text: &'a str,
    source: &'a str,
}

/// A table from the file, with the dotted path that names it.
pub(super) struct Section<'d> {
    path: String,
    table: &'d DeTable<'d>,
}

/// One value from the file, with the dotted path that names it in errors and,
/// when it came from a table, where its key was written.
#[derive(Clone)]
pub(super) struct Item<'d> {
    pub(super) path: String,
    key: Option<Range<usize>>,
    pub(super) value: &'d Spanned<DeValue<'d>>,
}

impl<'d> Section<'d> {
    /// The top level of the document.
    pub(super) fn root(table: &'d DeTable<'d>) -> Section<'d> {
        Section { path: String::new(), table }
    }

    pub(super) fn get(&self, key: &str) -> Option<Item<'d>> {
        self.entries().find(|(name, _)| *name == key).map(|(_, item)| item)
    }

    /// Every entry in file order, with its key.
    pub(super) fn entries(&self) -> impl Iterator<Item = (&'d str, Item<'d>)> + '_ {
        self.table.iter().map(|(key, value)| {
            let name: &'d str = key.get_ref();
            let path = join(&self.path, name);
            (name, Item { path, key: Some(key.span()), value })
        })
    }
}

/// `parent.key`, quoting the key when it is not a bare TOML key.
fn join(parent: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare { key.to_string() } else { format!("{key:?}") };
    if parent.is_empty() { key } else { format!("{parent}.{key}") }
}

impl<'a> Reader<'a> {
    /// A reader of `text`, which `source` names in errors.
    pub(super) fn new(text: &'a str, source: &'a str) -> Reader<'a> {
        Reader { text, source }
    }

    pub(super) fn error(
        &self,
        span: Option<Range<usize>>,
        key: &str,
        problem: impl Into<String>,
    ) -> ConfigError {
        let line = span.map(|span| {
            let end = span.start.min(self.text.len());
            self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
        });
        ConfigError { file: self.source.to_string(), line, key: key.to_string(), problem: problem.into() }
    }

    /// An error about an item's value.
    pub(super) fn at(&self, item: &Item<'_>, problem: impl Into<String>) -> ConfigError {
        self.error(Some(item.value.span()), &item.path, problem)
    }

    /// An error about an item's key (an unknown key, a bad user name).
    pub(super) fn at_key(&self, item: &Item<'_>, problem: impl Into<String>) -> ConfigError {
        let span = item.key.clone().unwrap_or(item.value.span());
        self.error(Some(span), &item.path, problem)
    }

    pub(super) fn missing(&self, key: &str, example: &str) -> ConfigError {
        self.error(None, key, format!("this key is required; add a line like: {example}"))
    }

    pub(super) fn wrong_type(&self, item: &Item<'_>, expected: &str) -> ConfigError {
        let found = describe(item.value.get_ref());
        self.at(item, format!("expected {expected}, found {found}"))
    }

    /// Refuses keys not in `allowed`, listing the known ones.
    pub(super) fn check_keys(&self, section: &Section<'_>, allowed: &[&str]) -> Result<(), ConfigError> {
        for (name, item) in section.entries() {
            if allowed.contains(&name) {
                continue;
            }
            let what = if matches!(item.value.get_ref(), DeValue::Table(_)) {
                format!("unknown table [{}]", item.path)
            } else if section.path.is_empty() {
                format!("unknown key `{name}` at the top level")
            } else {
                format!("unknown key `{name}` in [{}]", section.path)
            };
            let known = format!(" (known keys here: {})", allowed.join(", "));
            return Err(self.at_key(&item, what + &known));
        }
        Ok(())
    }

    pub(super) fn table<'d>(&self, item: &Item<'d>) -> Result<Section<'d>, ConfigError> {
        match item.value.get_ref() {
            DeValue::Table(table) => Ok(Section { path: item.path.clone(), table }),
            _ => Err(self.wrong_type(item, "a table")),
        }
    }

    /// A table whose keys must all be in `allowed`.
    pub(super) fn section<'d>(&self, item: &Item<'d>, allowed: &[&str]) -> Result<Section<'d>, ConfigError> {
        let section = self.table(item)?;
        self.check_keys(&section, allowed)?;
        Ok(section)
    }

    pub(super) fn array<'d>(&self, item: &Item<'d>) -> Result<Vec<Item<'d>>, ConfigError> {
        match item.value.get_ref() {
            DeValue::Array(values) => Ok(values
                .iter()
                .enumerate()
                .map(|(i, value)| Item { path: format!("{}[{i}]", item.path), key: None, value })
                .collect()),
            _ => Err(self.wrong_type(item, "an array")),
        }
    }

    pub(super) fn string<'d>(&self, item: &Item<'d>) -> Result<&'d str, ConfigError> {
        match item.value.get_ref() {
            DeValue::String(s) => Ok(s),
            _ => Err(self.wrong_type(item, "a string")),
        }
    }

    /// Reads `key` of `section` into `slot` when present; returns its item for later checks.
    pub(super) fn set<'d, T>(
        &self,
        section: &Section<'d>,
        key: &str,
        slot: &mut T,
        read: impl FnOnce(&Self, &Item<'d>) -> Result<T, ConfigError>,
    ) -> Result<Option<Item<'d>>, ConfigError> {
        let Some(item) = section.get(key) else {
            return Ok(None);
        };
        *slot = read(self, &item)?;
        Ok(Some(item))
    }

    /// A string run through `parse`, whose error message becomes the problem.
    pub(super) fn parsed<T>(
        &self,
        item: &Item<'_>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let text = self.string(item)?;
        parse(text).map_err(|problem| self.at(item, problem))
    }

    pub(super) fn path(&self, item: &Item<'_>) -> Result<PathBuf, ConfigError> {
        self.parsed(item, |s| match s {
            "" => Err("the path is empty".to_string()),
            _ => Ok(PathBuf::from(s)),
        })
    }

    /// A whole number of at least 1 that fits in `T`.
    pub(super) fn count<T: TryFrom<u64>>(&self, item: &Item<'_>) -> Result<T, ConfigError> {
        let DeValue::Integer(n) = item.value.get_ref() else {
            return Err(self.wrong_type(item, "a whole number"));
        };
        match u64::from_str_radix(n.as_str(), n.radix()) {
            Ok(0) | Err(_) => Err(self.at(item, format!("must be a whole number of at least 1, found {n}"))),
            Ok(value) => T::try_from(value).map_err(|_| self.at(item, format!("{n} is too large"))),
        }
    }

    /// A size string like `"25M"`, or a plain number of bytes; never zero.
    pub(super) fn size(&self, item: &Item<'_>) -> Result<u64, ConfigError> {
        let bytes = match item.value.get_ref() {
            DeValue::String(s) => parse_size(s).map_err(|problem| self.at(item, problem))?,
            DeValue::Integer(_) => self.count(item)?,
            _ => return Err(self.wrong_type(item, "a size like \"25M\"")),
        };
        if bytes == 0 {
            return Err(self.at(item, "must be larger than 0"));
        }
        Ok(bytes)
    }

    /// A duration string like `"5m"`; never zero.
    pub(super) fn duration(&self, item: &Item<'_>) -> Result<Duration, ConfigError> {
        let duration = match item.value.get_ref() {
            DeValue::String(s) => parse_duration(s).map_err(|problem| self.at(item, problem))?,
            DeValue::Integer(n) => {
                return Err(self.at(item, format!("expected a duration like \"5m\", found the number {n}; add a unit: s, m, h or d (like \"{n}s\")")));
            }
            _ => return Err(self.wrong_type(item, "a duration like \"5m\"")),
        };
        if duration.is_zero() {
            return Err(self.at(item, "must be longer than 0s"));
        }
        Ok(duration)
    }
}

fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("the string {s:?}"),
        DeValue::Integer(n) => format!("the number {n}"),
        DeValue::Float(x) => format!("the number {x}"),
        DeValue::Boolean(b) => format!("`{b}`"),
        DeValue::Datetime(d) => format!("the date {d}"),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}
