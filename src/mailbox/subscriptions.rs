//! The folders a user subscribed to, in the `subscriptions` file at the top
//! of their Maildir, as Dovecot keeps it: `V\t2`, an empty line, then one
//! name a line with its levels joined by a tab. Older files without the
//! version line hold one name a line, levels joined by `/` (the delimiter
//! we show). Replaced whole, by a rename.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::Path;

use super::folder::DELIMITER;

/// The file's name in the Maildir.
pub const FILE: &str = "subscriptions";
/// The most names kept.
const MAX: usize = 10_000;

/// Reads the subscribed names, in file order; none without a file.
///
/// # Errors
/// I/O errors other than a missing file.
pub fn read(maildir: &Path) -> io::Result<Vec<String>> {
    let mut text = String::new();
    match File::open(maildir.join(FILE)) {
        Ok(f) => {
            f.take(4 << 20).read_to_string(&mut text)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    Ok(parse(&text))
}

/// The names a file's text holds.
pub fn parse(text: &str) -> Vec<String> {
    let (v2, body) = match text.strip_prefix("V\t2\n") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let mut names: Vec<String> = Vec::new();
    for line in body.lines() {
        if line.is_empty() || line.chars().any(|c| c.is_control() && c != '\t') {
            continue;
        }
        let name = if v2 { line.replace('\t', &DELIMITER.to_string()) } else { line.to_string() };
        if !names.contains(&name) && names.len() < MAX {
            names.push(name);
        }
    }
    names
}

/// The file's text for `names`.
pub fn format(names: &[String]) -> String {
    let mut out = String::from("V\t2\n\n");
    for n in names {
        out.push_str(&n.replace(DELIMITER, "\t"));
        out.push('\n');
    }
    out
}

/// Adds or removes `name` and writes the file when that changed anything.
///
/// # Errors
/// I/O errors; the old file is then untouched.
pub fn set(maildir: &Path, name: &str, subscribed: bool) -> io::Result<()> {
    let mut names = read(maildir)?;
    let had = names.iter().position(|n| n == name);
    match (had, subscribed) {
        (None, true) => names.push(name.to_string()),
        (Some(i), false) => {
            names.remove(i);
        }
        _ => return Ok(()),
    }
    write(maildir, &names)
}

/// Replaces the file with `names`.
///
/// # Errors
/// I/O errors; the old file is then untouched.
pub fn write(maildir: &Path, names: &[String]) -> io::Result<()> {
    // The file's own name per write: two sessions of one user may write at once.
    super::durable::replace_file(maildir, FILE, format(names).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecots_file_reads_and_writes_back() {
        // What Dovecot 2.3 wrote for Sent and Lists/rust.
        let text = "V\t2\n\nSent\nLists\trust\n";
        assert_eq!(parse(text), ["Sent", "Lists/rust"]);
        assert_eq!(format(&parse(text)), text);
        assert_eq!(parse("Sent\nLists/rust\n\nSent\n"), ["Sent", "Lists/rust"]);
    }

    #[test]
    fn subscribing_twice_or_unsubscribing_nothing_changes_nothing() {
        let t = tempfile::tempdir().unwrap();
        set(t.path(), "Sent", true).unwrap();
        set(t.path(), "Sent", true).unwrap();
        set(t.path(), "Archive/2024", true).unwrap();
        assert_eq!(read(t.path()).unwrap(), ["Sent", "Archive/2024"]);
        set(t.path(), "Nope", false).unwrap();
        set(t.path(), "Sent", false).unwrap();
        assert_eq!(std::fs::read_to_string(t.path().join(FILE)).unwrap(), "V\t2\n\nArchive\t2024\n");
    }
}
