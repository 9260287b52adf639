//! The `postern` command: argument parsing and wiring only.

use std::path::PathBuf;
use std::process::ExitCode;

use postern::config::Config;

const USAGE: &str = "usage:
  postern serve [--config PATH | --default-config]   run the server
  postern check-config [--config PATH]                 check a config file and exit
  postern passwd USER@DOMAIN [--stdin]                 print an argon2id hash for the config
  postern queue [--config PATH] list | show ID | retry ID|--all | delete ID | bounce ID
  postern status [--config PATH]                       what the running server is doing
  postern sendmail [options] [recipient ...]           submit a message read from stdin
  postern version                                      print the version
  mailq, sendmail                                      the same as `postern queue list`, `postern sendmail`

The config defaults to /etc/postern/postern.toml. --default-config runs on the
built-in development config: ports 2525/2587/2465 on 127.0.0.1, data under ./data.";

const DEFAULT_CONFIG: &str = "/etc/postern/postern.toml";

/// sysexits.h codes.
const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_OSERR: u8 = 71;
const EX_IOERR: u8 = 74;
const EX_NOPERM: u8 = 77;
const EX_CONFIG: u8 = 78;

/// Where a command's config comes from.
#[derive(Debug, PartialEq)]
enum Source {
    File(PathBuf),
    Embedded,
}

/// One argument of a command that takes `--config PATH`.
#[derive(Debug, PartialEq)]
enum Arg<'a> {
    /// `--config PATH` or `-c PATH`.
    Config(PathBuf),
    /// Anything else, for the command to judge.
    Other(&'a str),
}

/// The one reader of `--config PATH` / `-c PATH`: a command's arguments in
/// order, the flag and its path taken as one. A flag without a path (it can
/// only be the last argument) is an error, after the arguments before it.
fn config_args(args: &[String]) -> impl Iterator<Item = Result<Arg<'_>, String>> + '_ {
    let mut it = args.iter();
    std::iter::from_fn(move || {
        let a = it.next()?;
        Some(match a.as_str() {
            "--config" | "-c" => match it.next() {
                Some(p) => Ok(Arg::Config(PathBuf::from(p))),
                None => Err("--config needs a path".to_string()),
            },
            other => Ok(Arg::Other(other)),
        })
    })
}

/// The arguments of `serve` and `check-config`: the last `--config PATH`
/// or (with `allow_embedded`) `--default-config` wins.
fn parse_source(args: &[String], allow_embedded: bool) -> Result<Source, String> {
    let mut source = Source::File(PathBuf::from(DEFAULT_CONFIG));
    for arg in config_args(args) {
        match arg? {
            Arg::Config(p) => source = Source::File(p),
            Arg::Other("--default-config") if allow_embedded => source = Source::Embedded,
            Arg::Other(other) => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(source)
}

/// Loads the config, or says why not on stderr and gives `EX_CONFIG`.
fn load(source: &Source) -> Result<Config, ExitCode> {
    let loaded = match source {
        Source::Embedded => Ok(Config::embedded_default()),
        Source::File(p) => Config::load(p),
    };
    loaded.map_err(|e| {
        eprintln!("postern: {e}");
        ExitCode::from(EX_CONFIG)
    })
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args: Vec<String> = std::env::args().collect();
    let program = args.first().map(|a| a.rsplit('/').next().unwrap_or(a).to_string()).unwrap_or_default();
    args.remove(0);
    if program == "mailq" {
        args.insert(0, "queue".into());
    }
    if program == "sendmail" {
        args.insert(0, "sendmail".into());
    }
    let Some(cmd) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(EX_USAGE);
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "serve" | "check-config" => {
            let source = match parse_source(rest, cmd == "serve") {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("postern: {e}\n{USAGE}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            let config = match load(&source) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if cmd == "check-config" {
                if let Err(e) = postern::tls::check(&config) {
                    eprintln!("postern: {}: {e}", config.source);
                    return ExitCode::from(EX_CONFIG);
                }
                if let Err(e) = postern::deliver::remote::check(&config.hostname, &config.outbound) {
                    eprintln!("postern: {}: outbound: {e}", config.source);
                    return ExitCode::from(EX_CONFIG);
                }
                println!("{}: OK", config.source);
                return ExitCode::SUCCESS;
            }
            // The store and every Maildir as well as their roots: a layout made
            // by hand may give only the lower levels to the service's user.
            let mut owned = vec![
                config.data_dir.clone(),
                postern::queue::dir(&config.data_dir),
                config.mail_root.clone(),
            ];
            for d in &config.domains {
                let domain = config.mail_root.join(d.name.to_string());
                owned.extend(d.users.iter().map(|(u, _)| domain.join(u)));
                owned.push(domain);
            }
            let owned: Vec<&std::path::Path> = owned.iter().map(|p| p.as_path()).collect();
            if let Some((dir, uid)) = postern::identity::foreign_to_root(&owned) {
                eprintln!(
                    "postern: {} belongs to uid {uid}: a server run by root would make files there \
                     that uid {uid} cannot open; start it as that user (systemctl start postern)",
                    dir.display()
                );
                return ExitCode::from(EX_NOPERM);
            }
            log::info!("config {}", config.source);
            match postern::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        "passwd" => passwd(rest),
        "queue" => queue(rest),
        "status" => status(rest),
        "sendmail" => sendmail(rest),
        "version" | "--version" | "-V" => {
            println!("postern {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("postern: unknown command {other:?}\n{USAGE}");
            ExitCode::from(EX_USAGE)
        }
    }
}

/// `postern passwd USER@DOMAIN [--stdin]`: reads a password (twice, without
/// echo, from a terminal; once from standard input with `--stdin`) and prints
/// its argon2id hash.
fn passwd(args: &[String]) -> ExitCode {
    let mut user = None;
    let mut from_stdin = false;
    for a in args {
        match a.as_str() {
            "--stdin" => from_stdin = true,
            s if !s.starts_with('-') && user.is_none() => user = Some(s.to_string()),
            other => {
                eprintln!("postern: unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(EX_USAGE);
            }
        }
    }
    let Some(user) = user.filter(|u| u.contains('@')) else {
        eprintln!("postern: passwd needs USER@DOMAIN\n{USAGE}");
        return ExitCode::from(EX_USAGE);
    };
    let password = if from_stdin {
        let mut line = String::new();
        if let Err(e) = std::io::stdin().read_line(&mut line) {
            eprintln!("postern: cannot read the password: {e}");
            return ExitCode::from(EX_IOERR);
        }
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        if !rustix::termios::isatty(std::io::stdin()) {
            eprintln!("postern: standard input is not a terminal; pass --stdin to read the password from it");
            return ExitCode::from(EX_USAGE);
        }
        let first = match read_hidden(&format!("Password for {user}: ")) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("postern: {e}");
                return ExitCode::from(EX_IOERR);
            }
        };
        match read_hidden("Again: ") {
            Ok(second) if second == first => first,
            Ok(_) => {
                eprintln!("postern: the passwords differ");
                return ExitCode::from(EX_DATAERR);
            }
            Err(e) => {
                eprintln!("postern: {e}");
                return ExitCode::from(EX_IOERR);
            }
        }
    };
    if password.is_empty() {
        eprintln!("postern: empty password refused");
        return ExitCode::from(EX_DATAERR);
    }
    match postern::auth::hash_password(&password) {
        Ok(hash) => {
            let name = user.split('@').next().unwrap_or("");
            eprintln!(
                "# put this under [domains.\"{}\".users] as: {name} = \"<hash>\"",
                user.rsplit('@').next().unwrap_or("")
            );
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("postern: cannot hash the password: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads a line from the terminal with echo off.
fn read_hidden(prompt: &str) -> std::io::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    use std::io::Write as _;
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    // Echo goes off before the prompt shows, so nothing typed early is echoed.
    tcsetattr(&stdin, OptionalActions::Now, &quiet)?;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    tcsetattr(&stdin, OptionalActions::Now, &saved)?;
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// `postern queue ...`: asks the running server, or works on the store
/// directly when none runs.
fn queue(args: &[String]) -> ExitCode {
    let mut config_path = PathBuf::from(DEFAULT_CONFIG);
    let mut words: Vec<&str> = Vec::new();
    for arg in config_args(args) {
        match arg {
            Ok(Arg::Config(p)) => config_path = p,
            Ok(Arg::Other(w)) => words.push(w),
            Err(e) => {
                eprintln!("postern: {e}");
                return ExitCode::from(EX_USAGE);
            }
        }
    }
    let cmd = match postern::queue::admin::Command::parse(&words) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("postern: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let config = match load(&Source::File(config_path)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Root works as the owner of the data dir before it touches anything in
    // it (the control socket included), so that what it creates there is the
    // server's. No thread has started yet, as the switch needs.
    let root = rustix::process::geteuid().is_root();
    let owner = match std::fs::metadata(&config.data_dir) {
        Ok(meta) => postern::identity::Owner::of(&meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "postern: no data dir at {}: the server creates it when it first starts",
                config.data_dir.display()
            );
            return ExitCode::from(postern::sendmail::EX_UNAVAILABLE);
        }
        Err(e) => {
            eprintln!("postern: {}: {e}", config.data_dir.display());
            return ExitCode::from(EX_IOERR);
        }
    };
    if let Err(e) = postern::identity::become_owner(owner) {
        eprintln!(
            "postern: cannot switch to uid {} gid {}, the owner of {}: {e}",
            owner.uid,
            owner.gid,
            config.data_dir.display()
        );
        return ExitCode::from(EX_OSERR);
    }
    match postern::control::request(&config.data_dir, &cmd) {
        Ok(Some(out)) => {
            print!("{out}");
            return ExitCode::SUCCESS;
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("postern: {e}");
            return ExitCode::from(EX_DATAERR);
        }
    }
    // No server: open the store here (its lock keeps a server from starting
    // meanwhile), but never make it: the server does, as its own user.
    let dir = postern::queue::dir(&config.data_dir);
    match std::fs::metadata(&dir) {
        // Root opens only a queue that belongs to the data dir's owner: a
        // link planted in the data dir must not lead it into another user's
        // files.
        Ok(meta) if root && postern::identity::Owner::of(&meta) != owner => {
            let theirs = postern::identity::Owner::of(&meta);
            eprintln!(
                "postern: {} belongs to uid {}, not to uid {} who owns {}: not opening it",
                dir.display(),
                theirs.uid,
                owner.uid,
                config.data_dir.display()
            );
            return ExitCode::from(EX_NOPERM);
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("postern: no queue at {}: the server creates it when it first starts", dir.display());
            return ExitCode::from(postern::sendmail::EX_UNAVAILABLE);
        }
        Err(e) => {
            eprintln!("postern: {}: {e}", dir.display());
            return ExitCode::from(EX_IOERR);
        }
    }
    let settings = postern::Settings::new(config);
    let queue = match postern::queue::Queue::open(&settings) {
        Ok(q) => std::sync::Arc::new(q),
        Err(e) => {
            eprintln!("postern: {e}");
            return ExitCode::from(EX_IOERR);
        }
    };
    match smol::block_on(postern::queue::admin::run(&queue, &settings, &cmd)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("postern: {e}");
            ExitCode::from(EX_DATAERR)
        }
    }
}

/// `postern status`: asks the running server.
fn status(args: &[String]) -> ExitCode {
    // At most one --config, and nothing else.
    let mut config_path = None;
    for arg in config_args(args) {
        match arg {
            Ok(Arg::Config(p)) if config_path.is_none() => config_path = Some(p),
            _ => {
                eprintln!("postern: usage: postern status [--config PATH]");
                return ExitCode::from(EX_USAGE);
            }
        }
    }
    let config_path = config_path.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let config = match load(&Source::File(config_path)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match postern::control::request_line(&config.data_dir, "status") {
        Ok(Some(out)) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("postern: no server is running on {}", config.data_dir.display());
            ExitCode::from(postern::sendmail::EX_UNAVAILABLE)
        }
        Err(e) => {
            eprintln!("postern: {e}");
            ExitCode::from(EX_DATAERR)
        }
    }
}

/// `postern sendmail` / `sendmail`: see `postern::sendmail`.
fn sendmail(args: &[String]) -> ExitCode {
    use postern::sendmail::{self, Target};
    let opts = match sendmail::parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sendmail: {e}");
            return ExitCode::from(sendmail::EX_USAGE);
        }
    };
    let path = opts.config.clone().map_or(PathBuf::from(DEFAULT_CONFIG), PathBuf::from);
    if opts.list_queue {
        return queue(&["--config".to_string(), path.display().to_string(), "list".to_string()]);
    }
    // An unprivileged user may not read the config: then loopback port 25.
    let target = match Config::load(&path) {
        Ok(config) => Target::from_config(&config),
        Err(_) if opts.config.is_none() => Target::fallback(),
        Err(e) => {
            eprintln!("sendmail: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let result = if opts.smtp {
        sendmail::relay_smtp(&target)
    } else {
        sendmail::send(&opts, &target, std::io::stdin())
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("sendmail: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn config_args_take_the_flag_and_its_path_as_one() {
        let args = strings(&["list", "-c", "a.toml", "show", "--config", "-b.toml", "7"]);
        let got: Vec<Result<Arg<'_>, String>> = config_args(&args).collect();
        assert_eq!(
            got,
            [
                Ok(Arg::Other("list")),
                Ok(Arg::Config(PathBuf::from("a.toml"))),
                Ok(Arg::Other("show")),
                Ok(Arg::Config(PathBuf::from("-b.toml"))),
                Ok(Arg::Other("7")),
            ]
        );
        for flag in ["--config", "-c"] {
            let args = strings(&["list", flag]);
            let got: Vec<Result<Arg<'_>, String>> = config_args(&args).collect();
            assert_eq!(got, [Ok(Arg::Other("list")), Err("--config needs a path".to_string())], "{flag}");
        }
        assert_eq!(config_args(&[]).count(), 0);
    }

    #[test]
    fn serve_and_check_config_take_the_last_source_given() {
        let file = |p: &str| Ok(Source::File(PathBuf::from(p)));
        let cases: &[(&[&str], bool, Result<Source, String>)] = &[
            (&[], true, file(DEFAULT_CONFIG)),
            (&["-c", "a.toml"], false, file("a.toml")),
            (&["-c", "a.toml", "--config", "b.toml"], false, file("b.toml")),
            (&["-c", "a.toml", "--default-config"], true, Ok(Source::Embedded)),
            (&["--default-config", "-c", "a.toml"], true, file("a.toml")),
            (&["--default-config"], false, Err("unknown argument \"--default-config\"".to_string())),
            (&["--config"], true, Err("--config needs a path".to_string())),
            (&["foo", "--config"], true, Err("unknown argument \"foo\"".to_string())),
        ];
        for (args, allow_embedded, want) in cases {
            assert_eq!(parse_source(&strings(args), *allow_embedded), *want, "{args:?}");
        }
    }
}
