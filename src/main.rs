//! The `postern` command: argument parsing and wiring only.

use std::path::PathBuf;
use std::process::ExitCode;

use postern::config::Config;

const USAGE: &str = "usage:
  postern serve [--config PATH | --default-config]   run the server
  postern check-config [--config PATH]                 check a config file and exit

The config defaults to /etc/postern/postern.toml. --default-config runs on the
built-in development config: ports 2525/2587/2465 on 127.0.0.1, data under ./data.";

const DEFAULT_CONFIG: &str = "/etc/postern/postern.toml";

/// sysexits.h: EX_USAGE and EX_CONFIG.
const EX_USAGE: u8 = 64;
const EX_CONFIG: u8 = 78;

enum Source {
    File(PathBuf),
    Embedded,
}

fn parse_source(args: &[String], allow_embedded: bool) -> Result<Source, String> {
    let mut source = Source::File(PathBuf::from(DEFAULT_CONFIG));
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "-c" => match it.next() {
                Some(p) => source = Source::File(PathBuf::from(p)),
                None => return Err("--config needs a path".into()),
            },
            "--default-config" if allow_embedded => source = Source::Embedded,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(source)
}

fn load(source: &Source) -> Result<Config, String> {
    match source {
        Source::Embedded => Ok(Config::embedded_default()),
        Source::File(p) => Config::load(p).map_err(|e| e.to_string()),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
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
                Err(e) => {
                    eprintln!("postern: {e}");
                    return ExitCode::from(EX_CONFIG);
                }
            };
            if cmd == "check-config" {
                println!("{}: OK", config.source);
                return ExitCode::SUCCESS;
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
