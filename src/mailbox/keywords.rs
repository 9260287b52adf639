//! A folder's keyword names, in Dovecot's `dovecot-keywords`: line `<n>
//! <name>` says that the letter `a` + n in a file name's flags is the IMAP
//! keyword `<name>`. Only 26 fit a file name. Read without a lock; written
//! under the folder's `dovecot-uidlist.lock` and only ever replaced whole, by
//! a rename.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::Path;

use super::uidlist::Lock;

/// The file's name in a folder's directory.
pub const FILE: &str = "dovecot-keywords";
/// How many keywords a file name can hold: the letters `a` to `z`.
pub const MAX: usize = 26;
/// The longest keyword name kept (Dovecot's own limit is far above what
/// clients use).
const MAX_NAME: usize = 200;

/// The keyword names of a folder, by index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keywords {
    names: Vec<Option<String>>,
}

impl Keywords {
    /// Reads the file's text. Lines that do not read (a bad index, one past
    /// the 26 letters, an empty name) are left out, as Dovecot leaves them.
    pub fn parse(text: &str) -> Keywords {
        let mut names: Vec<Option<String>> = Vec::new();
        for line in text.lines() {
            let Some((n, name)) = line.split_once(' ') else { continue };
            let Ok(i) = n.parse::<usize>() else { continue };
            if i >= MAX || !is_keyword(name) {
                continue;
            }
            if names.len() <= i {
                names.resize(i + 1, None);
            }
            names[i] = Some(name.to_string());
        }
        Keywords { names }
    }

    /// The file's text.
    pub fn format(&self) -> String {
        let mut out = String::new();
        for (i, name) in self.names.iter().enumerate() {
            if let Some(name) = name {
                out.push_str(&format!("{i} {name}\n"));
            }
        }
        out
    }

    /// The name of keyword `index`.
    pub fn name(&self, index: u8) -> Option<&str> {
        self.names.get(usize::from(index)).and_then(Option::as_deref)
    }

    /// The index of the keyword `name`, compared without regard to case as
    /// IMAP compares flags.
    pub fn index(&self, name: &str) -> Option<u8> {
        let i = self.names.iter().position(|n| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))?;
        u8::try_from(i).ok()
    }

    /// The index of `name`, given the first free one when it is new; `None`
    /// when all 26 are taken or `name` is not a keyword.
    pub fn index_or_add(&mut self, name: &str) -> Option<u8> {
        if let Some(i) = self.index(name) {
            return Some(i);
        }
        if !is_keyword(name) {
            return None;
        }
        let free = self.names.iter().position(Option::is_none).unwrap_or(self.names.len());
        if free >= MAX {
            return None;
        }
        if free == self.names.len() {
            self.names.push(None);
        }
        self.names[free] = Some(name.to_string());
        u8::try_from(free).ok()
    }

    /// Every keyword name, in index order.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        self.names.iter().filter_map(Option::as_deref)
    }
}

/// Whether `name` may be a keyword: an IMAP atom that is not a system flag
/// (no `\`), printable ASCII without the characters an atom may not hold.
pub fn is_keyword(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
}

/// Reads the keywords of the folder at `dir`; none when it has no file.
///
/// # Errors
/// I/O errors other than a missing file.
pub fn read(dir: &Path) -> io::Result<Keywords> {
    match File::open(dir.join(FILE)) {
        Ok(f) => {
            let mut text = String::new();
            f.take(64 * 1024).read_to_string(&mut text)?;
            Ok(Keywords::parse(&text))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Keywords::default()),
        Err(e) => Err(e),
    }
}

/// Replaces the keywords file of the folder at `dir`, while `_lock` (that
/// folder's) is held: a new file, synced, renamed over the old one.
///
/// # Errors
/// I/O errors; the old file is then untouched.
pub fn write(dir: &Path, _lock: &Lock, keywords: &Keywords) -> io::Result<()> {
    super::durable::replace_file(dir, FILE, keywords.format().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecots_file_reads_and_writes_back() {
        let k = Keywords::parse("0 $Junk\n1 $NonJunk\n3 $label1\n");
        assert_eq!(k.name(0), Some("$Junk"));
        assert_eq!(k.name(2), None);
        assert_eq!(k.index("$nonjunk"), Some(1));
        assert_eq!(k.format(), "0 $Junk\n1 $NonJunk\n3 $label1\n");
    }

    #[test]
    fn bad_lines_are_left_out() {
        let k = Keywords::parse("x $a\n26 $b\n-1 $c\n2 \n1 has space\n4 \\Seen\n0 ok\n");
        assert_eq!(k.all().collect::<Vec<_>>(), ["ok"]);
    }

    #[test]
    fn new_keywords_take_the_first_free_letter_up_to_26() {
        let mut k = Keywords::parse("1 $b\n");
        assert_eq!(k.index_or_add("$a"), Some(0));
        assert_eq!(k.index_or_add("$B"), Some(1));
        assert_eq!(k.index_or_add("$c"), Some(2));
        assert_eq!(k.index_or_add("\\Seen"), None);
        for i in 3..26 {
            assert_eq!(k.index_or_add(&format!("k{i}")), Some(i));
        }
        assert_eq!(k.index_or_add("one-too-many"), None);
        assert_eq!(Keywords::parse(&k.format()), k);
    }
}
