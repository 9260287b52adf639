//! The SMTP command parser: any line, never a panic; what it accepts is
//! well formed and reads back the same when written out again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::envelope::{Address, Domain, Path};
use postern::smtp::command::{Command, CommandError, parse};

/// A path as a client would write it.
fn render(path: &Path) -> String {
    match path {
        Path::Null => "<>".to_string(),
        Path::Mailbox(a) => format!("<{a}>"),
        Path::Bare(local) => {
            // Reuse the address printer for the quoting of the local part.
            let x = Domain::parse("x").expect("a valid domain");
            let full = Address::new(local.clone(), x).to_string();
            format!("<{}>", full.strip_suffix("@x").expect("printed with its domain"))
        }
    }
}

fn check_path(path: &Path) {
    if let Path::Mailbox(a) = path {
        assert!(a.local().len() <= 64, "local part over 64 octets: {a:?}");
        assert!(a.domain().as_str().len() <= 255, "domain over 255 octets: {a:?}");
        assert_eq!(Address::parse(&a.to_string()), Ok(a.clone()), "{a:?} does not read back");
    }
}

fuzz_target!(|line: &[u8]| {
    let parsed = parse(line);
    assert_eq!(parse(line), parsed, "same line, another answer");
    match &parsed {
        Ok(Command::Ehlo(host) | Command::Helo(host)) => {
            assert!(!host.is_empty() && host.len() <= 255, "bad host name {host:?}");
            assert!(!host.contains(char::is_whitespace), "space in host name {host:?}");
        }
        Ok(Command::Auth(arg)) => {
            assert!(!arg.is_empty() && arg.trim() == arg, "bad AUTH argument {arg:?}");
        }
        Ok(Command::Mail { from, params }) => {
            check_path(from);
            let mut again = format!("MAIL FROM:{}", render(from));
            if let Some(size) = params.size {
                again += &format!(" SIZE={size}");
            }
            if params.body_8bit {
                again += " BODY=8BITMIME";
            }
            if params.smtputf8 {
                again += " SMTPUTF8";
            }
            assert_eq!(parse(again.as_bytes()), parsed, "{line:?} written as {again:?}");
        }
        Ok(Command::Rcpt { to }) => {
            check_path(to);
            assert_ne!(to, &Path::Null);
            let again = format!("RCPT TO:{}", render(to));
            assert_eq!(parse(again.as_bytes()), parsed, "{line:?} written as {again:?}");
        }
        Ok(_) => {}
        Err(CommandError::Parameter(p)) => assert!(p.len() <= line.len()),
        Err(_) => {}
    }
    if let Ok(cmd) = &parsed {
        // A line with a control character in it is never a command.
        assert!(
            !line.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f),
            "control character accepted: {cmd:?}"
        );
    }
});
