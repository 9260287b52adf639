//! Whole-config tests: defaults, normalisation, and the file, line, key and
//! problem of each broken config, including the files in tests/bad_configs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::units::{GIB, MIB};
use super::*;
use crate::dns::Prefer;

/// The smallest valid config; broken cases below are built by hand so their line numbers are plain.
const MINIMAL: &str = "hostname = \"Mail.Example.com.\"\n\
                       data_dir = \"data\"\n\
                       [domains.\"example.com\"]\n\
                       users = { alice = \"\" }\n";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "test.toml")
}

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let config = parse(MINIMAL).expect("minimal config");
    assert_eq!(config.source, "test.toml");
    assert_eq!(config.hostname, "mail.example.com");
    assert_eq!(config.data_dir, PathBuf::from("data"));
    assert_eq!(config.mail_root, PathBuf::from("data/mail"));
    assert_eq!(config.primary_domain.as_str(), "example.com");
    assert_eq!(config.listen, Listen::default());
    assert_eq!(config.listen.mx, vec![SocketAddr::from(([0, 0, 0, 0], 25))]);
    assert_eq!(config.tls, Tls::default());
    let nets: Vec<String> = config.relay.trusted_networks.iter().map(|n| n.to_string()).collect();
    assert_eq!(nets, ["127.0.0.0/8", "::1/128"]);
    assert_eq!(config.queue, QueueConfig::default());
    assert_eq!(config.queue.retry_first, Duration::from_secs(300));
    assert_eq!(config.limits, Limits::default());
    assert_eq!(config.limits.max_message_size, 25 * 1024 * 1024);
    let store = if cfg!(target_pointer_width = "64") { GIB } else { 256 * MIB };
    assert_eq!(config.limits.store_size, store);
}

#[test]
fn domains_keep_file_order_and_names_are_normalised() {
    let text = "hostname = \"mail.example.com\"\n\
                data_dir = \"/d\"\n\
                [domains.\"Zeta.Example.\"]\n\
                users = { Alice = \"\", bob = \"$argon2id$v=19$x\" }\n\
                aliases = { Info = [\"ALICE\", \"team\"], team = \"bob\", out = \"Someone+tag@Elsewhere.Example\" }\n\
                catch_all = \"info\"\n\
                [domains.\"alpha.example\"]\n";
    let config = parse(text).expect("valid config");
    let names: Vec<&str> = config.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["zeta.example", "alpha.example"]);
    assert_eq!(config.primary_domain.as_str(), "zeta.example");
    let zeta = config.domain("ZETA.example.").expect("domain lookup ignores case");
    assert_eq!(
        zeta.users,
        [("alice".to_string(), None), ("bob".to_string(), Some("$argon2id$v=19$x".to_string()))]
    );
    let aliases: Vec<(&str, Vec<&str>)> =
        zeta.aliases.iter().map(|(a, t)| (a.as_str(), t.iter().map(String::as_str).collect())).collect();
    assert_eq!(
        aliases,
        [
            ("info", vec!["alice", "team"]),
            ("team", vec!["bob"]),
            ("out", vec!["Someone+tag@elsewhere.example"])
        ]
    );
    assert_eq!(zeta.catch_all.as_deref(), Some("info"));
    assert!(config.domain("alpha.example").is_some_and(|d| d.users.is_empty()));
    assert!(config.domain("example.com").is_none());
}

#[test]
fn explicit_settings_override_defaults() {
    let text = format!("{MINIMAL}primary_domain = \"x\"\n");
    // primary_domain after a table header belongs to that table, so it is refused there.
    assert!(parse(&text).is_err());
    let text = "hostname = \"h.example\"\ndata_dir = \"/d\"\nmail_root = \"/m\"\nprimary_domain = \"B.example\"\n\
                [listen]\nmx = [\"127.0.0.1:0\"]\nsubmission = [\"127.0.0.1:0\"]\nsubmissions = []\n\
                [tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
                [relay]\ntrusted_networks = []\n\
                [domains.\"a.example\"]\n[domains.\"b.example\"]\n\
                [queue]\nretry_first = \"1m\"\nretry_max = \"1m\"\nlifetime = \"1d\"\ndelay_notice = \"2h\"\n\
                [limits]\nmax_message_size = 1048576\nmax_recipients = 5\nmax_connections = 6\n\
                max_connections_per_ip = 2\nmax_errors = 3\ncommand_timeout = \"30s\"\ndata_timeout = \"1m\"\n\
                store_size = \"64M\"\ndelivery_workers = 1\n";
    let config = parse(text).expect("valid config");
    assert_eq!(config.mail_root, PathBuf::from("/m"));
    assert_eq!(config.primary_domain.as_str(), "b.example");
    // Port 0 means "any free port", so the same address may appear twice.
    assert_eq!(config.listen.submission, vec![SocketAddr::from(([127, 0, 0, 1], 0))]);
    assert!(config.listen.submissions.is_empty());
    assert_eq!(config.tls.cert, Some(PathBuf::from("c.pem")));
    assert!(config.relay.trusted_networks.is_empty());
    assert_eq!(config.queue.lifetime, Duration::from_secs(86400));
    assert_eq!(config.limits.max_message_size, MIB);
    assert_eq!(config.limits.store_size, 64 * MIB);
    assert_eq!(config.limits.max_errors, 3);
}

/// (what, config text, expected key, expected line, fragment of the problem)
const BROKEN: &[(&str, &str, &str, Option<usize>, &str)] = &[
    (
        "unknown key",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[limits]\nmax_mesage_size = \"1M\"\n",
        "limits.max_mesage_size",
        Some(5),
        "unknown key `max_mesage_size` in [limits] (known keys here: max_message_size, max_recipients,",
    ),
    (
        "unknown top-level key",
        "hostname = \"h.example\"\ndata_dir = \"d\"\nspool = \"x\"\n[domains.\"example.com\"]\n",
        "spool",
        Some(3),
        "unknown key `spool` at the top level (known keys here: hostname,",
    ),
    (
        "misspelled table",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[limit]\n",
        "limit",
        Some(4),
        "unknown table [limit] (known keys here: hostname,",
    ),
    (
        "unknown key in a domain",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nuser = {}\n",
        "domains.\"example.com\".user",
        Some(4),
        "(known keys here: users, aliases, catch_all, send_as)",
    ),
    (
        "number where a string is expected",
        "hostname = 42\ndata_dir = \"d\"\n[domains.\"example.com\"]\n",
        "hostname",
        Some(1),
        "expected a string, found the number 42",
    ),
    (
        "string where a number is expected",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[limits]\nmax_recipients = \"100\"\n",
        "limits.max_recipients",
        Some(5),
        "expected a whole number, found the string \"100\"",
    ),
    (
        "zero count",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[limits]\ndelivery_workers = 0\n",
        "limits.delivery_workers",
        Some(5),
        "at least 1, found 0",
    ),
    (
        "bad size",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[limits]\nmax_message_size = \"25X\"\n",
        "limits.max_message_size",
        Some(5),
        "\"25X\" is not a size: unknown unit `x`",
    ),
    (
        "store smaller than a message",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[limits]\nstore_size = \"10M\"\n",
        "limits.store_size",
        Some(5),
        "store_size (10M) must be larger than max_message_size (25M)",
    ),
    (
        "bad network",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[relay]\ntrusted_networks = [\n  \"127.0.0.0/8\",\n  \"::1/128\",\n  \"192.168.1.1/24\",\n]\n[domains.\"example.com\"]\n",
        "relay.trusted_networks[2]",
        Some(7),
        "host bits set, did you mean 192.168.1.0/24?",
    ),
    (
        "alias to a missing user",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { alice = \"\" }\n[domains.\"example.com\".aliases]\ninfo = [\"alice\", \"carol\"]\n",
        "domains.\"example.com\".aliases.info[1]",
        Some(6),
        "`carol` is not a user or alias of example.com",
    ),
    (
        "send_as for a name that is not a user",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { alice = \"\" }\nsend_as = { bob = [\"*\"] }\n",
        "domains.\"example.com\".send_as.bob",
        Some(5),
        "`bob` is not a user of example.com",
    ),
    (
        "send_as with a bad pattern",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { alice = \"\" }\nsend_as = { alice = [\"*@\"] }\n",
        "domains.\"example.com\".send_as.alice[0]",
        Some(5),
        "`*@` is not a sender pattern",
    ),
    (
        "catch-all to a missing user",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\ncatch_all = \"carol\"\n",
        "domains.\"example.com\".catch_all",
        Some(4),
        "`carol` is not a user or alias",
    ),
    (
        "target with two @",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\naliases = { fwd = \"a@b@example.org\" }\n",
        "domains.\"example.com\".aliases.fwd",
        Some(4),
        "exactly one '@'",
    ),
    (
        "target address that mail cannot be sent to",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\naliases = { fwd = \"a(b@example.org\" }\n",
        "domains.\"example.com\".aliases.fwd",
        Some(4),
        "`a(b@example.org` is not an address mail can be sent to: bad local part",
    ),
    (
        "catch-all address with a bad local part",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\ncatch_all = \"a..b@example.org\"\n",
        "domains.\"example.com\".catch_all",
        Some(4),
        "`a..b@example.org` is not an address mail can be sent to",
    ),
    (
        "tls cert without key",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[tls]\ncert = \"c.pem\"\n[domains.\"example.com\"]\n",
        "tls.key",
        Some(4),
        "tls.cert is set but tls.key is missing",
    ),
    (
        "tls key without cert",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[tls]\nkey = \"k.pem\"\n[domains.\"example.com\"]\n",
        "tls.cert",
        Some(4),
        "tls.key is set but tls.cert is missing",
    ),
    (
        "duplicate listener",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[listen]\nmx = [\"0.0.0.0:25\"]\nsubmission = [\"0.0.0.0:25\"]\n[domains.\"example.com\"]\n",
        "listen.submission[0]",
        Some(5),
        "0.0.0.0:25 is listed twice: as listen.mx[0] and as listen.submission[0]",
    ),
    (
        "listener clashing with a default",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[listen]\nmx = [\"0.0.0.0:587\"]\n[domains.\"example.com\"]\n",
        "listen.mx[0]",
        Some(4),
        "as listen.submission (default)",
    ),
    (
        "listener under a wildcard",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[listen]\nmx = [\"0.0.0.0:25\", \"127.0.0.1:25\"]\n[domains.\"example.com\"]\n",
        "listen.mx[1]",
        Some(4),
        "127.0.0.1:25 overlaps 0.0.0.0:25",
    ),
    (
        "listener with a host name",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[listen]\nmx = [\"localhost:25\"]\n[domains.\"example.com\"]\n",
        "listen.mx[0]",
        Some(4),
        "`localhost:25` is not an IP address and port",
    ),
    (
        "primary domain not a domain",
        "hostname = \"h.example\"\ndata_dir = \"d\"\nprimary_domain = \"example.org\"\n[domains.\"example.com\"]\n",
        "primary_domain",
        Some(3),
        "`example.org` is not one of the configured domains (example.com)",
    ),
    (
        "alias name equal to a user name",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { alice = \"\" }\naliases = { Alice = \"bob@example.org\" }\n",
        "domains.\"example.com\".aliases.Alice",
        Some(5),
        "alias `alice` has the same name as a user",
    ),
    (
        "bad hash",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { alice = \"$2y$10$abc\" }\n",
        "domains.\"example.com\".users.alice",
        Some(4),
        "not an argon2id password hash",
    ),
    (
        "user name with a plus",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { \"al+ice\" = \"\" }\n",
        "domains.\"example.com\".users.\"al+ice\"",
        Some(4),
        "'+' separates a tag",
    ),
    (
        "user name that is a path",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { \"../etc\" = \"\" }\n",
        "domains.\"example.com\".users.\"../etc\"",
        Some(4),
        "must not start with a dot",
    ),
    (
        "user listed twice in different case",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { alice = \"\", ALICE = \"\" }\n",
        "domains.\"example.com\".users.ALICE",
        Some(4),
        "user `alice` is listed twice",
    ),
    (
        "bad domain name",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"exa mple.com\"]\n",
        "domains.\"exa mple.com\"",
        Some(3),
        "' ' is not allowed",
    ),
    (
        "hostname that is an IP address",
        "hostname = \"192.168.1.10\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n",
        "hostname",
        Some(1),
        "is an IP address",
    ),
    (
        "duration without a unit",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[queue]\nlifetime = 5\n",
        "queue.lifetime",
        Some(5),
        "add a unit: s, m, h or d",
    ),
    (
        "zero lifetime",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[queue]\nlifetime = \"0d\"\n",
        "queue.lifetime",
        Some(5),
        "must be longer than 0s",
    ),
    (
        "first retry after the longest",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[queue]\nretry_first = \"2h\"\n",
        "queue.retry_first",
        Some(5),
        "retry_first (2h) is longer than retry_max (1h)",
    ),
    (
        "missing hostname",
        "data_dir = \"d\"\n[domains.\"example.com\"]\n",
        "hostname",
        None,
        "this key is required",
    ),
    (
        "missing data_dir",
        "hostname = \"h.example\"\n[domains.\"example.com\"]\n",
        "data_dir",
        None,
        "this key is required",
    ),
    (
        "no domains",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n",
        "domains",
        None,
        "no domains are configured",
    ),
    (
        "empty domains table",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains]\n",
        "domains",
        Some(3),
        "no domains",
    ),
    ("syntax error", "hostname = \"h.example\"\ndata_dir = d\n", "", Some(2), "string values must be quoted"),
    ("duplicate key", "hostname = \"a\"\nhostname = \"b\"\n", "", Some(2), "duplicate key"),
    (
        "unknown address family",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[outbound]\nprefer = \"ipv5\"\n",
        "outbound.prefer",
        Some(5),
        "`ipv5` is not one of \"ipv4\", \"ipv6\", \"any\"",
    ),
    (
        "address family in capitals",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[outbound]\nprefer = \"IPv6\"\n",
        "outbound.prefer",
        Some(5),
        "`IPv6` is not one of \"ipv4\", \"ipv6\", \"any\"",
    ),
    (
        "address family as a number",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[outbound]\nprefer = 6\n",
        "outbound.prefer",
        Some(5),
        "expected a string, found the number 6",
    ),
    (
        "bad smarthost domain",
        "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[outbound.domains.\"work_example\"]\nrelay = \"smtp.work.example:587\"\n",
        "outbound.domains.work_example",
        Some(4),
        "`work_example` is not a valid DNS name: '_' is not allowed",
    ),
    (
        "bad primary domain",
        "hostname = \"h.example\"\ndata_dir = \"d\"\nprimary_domain = \"-x.example\"\n[domains.\"example.com\"]\n",
        "primary_domain",
        Some(3),
        "not start or end with '-'",
    ),
];

#[test]
fn broken_configs_name_line_key_and_problem() {
    for (what, text, key, line, fragment) in BROKEN {
        let err = match parse(text) {
            Ok(_) => panic!("{what}: parsed, but should fail"),
            Err(err) => err,
        };
        assert_eq!(err.file, "test.toml", "{what}");
        assert_eq!((err.key.as_str(), err.line), (*key, *line), "{what}: {err}");
        assert!(err.problem.contains(fragment), "{what}: {err}");
    }
}

#[test]
fn outbound_values_are_typed_where_read() {
    assert_eq!(parse(MINIMAL).expect("minimal config").outbound, Outbound::default());
    assert_eq!(Outbound::default().prefer, Prefer::Ipv4);
    for (text, want) in [("ipv4", Prefer::Ipv4), ("ipv6", Prefer::Ipv6), ("any", Prefer::Any)] {
        let config = parse(&format!("{MINIMAL}[outbound]\nprefer = \"{text}\"\n")).expect(text);
        assert_eq!(config.outbound.prefer, want, "prefer = {text:?}");
    }
    let text = format!(
        "{MINIMAL}[outbound.domains.\"Work.Example.\"]\nrelay = \"SMTP.Work.Example:465\"\n\
         [outbound.domains.\"b.example\"]\nrelay = \"[192.0.2.1]:587\"\n"
    );
    let config = parse(&text).expect("smarthosts per domain");
    let routes: Vec<(&str, &str, u16, SmarthostTls)> =
        config.outbound.domains.iter().map(|(d, h)| (d.as_str(), h.host.as_str(), h.port, h.tls)).collect();
    assert_eq!(
        routes,
        [
            ("work.example", "smtp.work.example", 465, SmarthostTls::Implicit),
            ("b.example", "192.0.2.1", 587, SmarthostTls::StartTls)
        ]
    );
}

#[test]
fn a_bad_hash_is_never_echoed() {
    let text = "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { alice = \"hunter2\" }\n";
    let err = parse(text).expect_err("plain password refused");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(err.problem.contains("postern passwd alice@example.com"), "{err}");
}

#[test]
fn errors_display_as_file_line_key_problem() {
    let mut err = ConfigError {
        file: "/etc/postern/postern.toml".into(),
        line: Some(7),
        key: "limits.max_message_size".into(),
        problem: "\"25X\" is not a size".into(),
    };
    assert_eq!(
        err.to_string(),
        "/etc/postern/postern.toml:7: limits.max_message_size: \"25X\" is not a size"
    );
    err.line = None;
    err.key.clear();
    assert_eq!(err.to_string(), "/etc/postern/postern.toml: \"25X\" is not a size");
}

#[test]
fn load_reports_an_unreadable_file() {
    let err = Config::load(Path::new("/nonexistent/postern.toml")).expect_err("no such file");
    assert_eq!((err.file.as_str(), err.line, err.key.as_str()), ("/nonexistent/postern.toml", None, ""));
    assert!(err.problem.starts_with("cannot read the config file: "), "{err}");
}

#[test]
fn embedded_default_parses() {
    let config = Config::embedded_default();
    assert_eq!(config.source, "<embedded default>");
    assert_eq!(config.hostname, "localhost");
    assert_eq!(config.data_dir, PathBuf::from("data"));
    assert_eq!(config.mail_root, PathBuf::from("data/mail"));
    assert_eq!(config.listen.mx, vec![SocketAddr::from(([127, 0, 0, 1], 2525))]);
    assert_eq!(config.listen.submission, vec![SocketAddr::from(([127, 0, 0, 1], 2587))]);
    assert_eq!(config.listen.submissions, vec![SocketAddr::from(([127, 0, 0, 1], 2465))]);
    assert_eq!(config.listen.imap, vec![SocketAddr::from(([127, 0, 0, 1], 2143))]);
    assert_eq!(config.listen.imaps, vec![SocketAddr::from(([127, 0, 0, 1], 2993))]);
    assert_eq!(config.primary_domain.as_str(), "example.test");
    let domain = config.domain("example.test").expect("example.test");
    assert_eq!(domain.users, [("alice".to_string(), None), ("bob".to_string(), None)]);
    assert_eq!(domain.aliases, [("team".to_string(), vec!["alice".to_string(), "bob".to_string()])]);
}

#[test]
fn shipped_example_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/postern.toml");
    let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.hostname, "mail.example.com");
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/postern"));
    // The example turns IMAP on, on its usual ports; the built-in default
    // (a config that names no IMAP listener) leaves it off.
    let imap = Listen {
        imap: vec![SocketAddr::from(([0, 0, 0, 0], 143))],
        imaps: vec![SocketAddr::from(([0, 0, 0, 0], 993))],
        ..Listen::default()
    };
    assert_eq!(config.listen, imap);
    assert!(Listen::default().imap.is_empty() && Listen::default().imaps.is_empty());
    assert_eq!(config.tls, Tls::default());
    assert_eq!(config.queue, QueueConfig::default());
    let mut limits = Limits::default();
    limits.store_size = config.limits.store_size;
    assert_eq!(config.limits, limits);
    let domain = config.domain("example.com").expect("example.com");
    assert!(domain.users.iter().all(|(_, hash)| hash.as_deref().is_none_or(|h| h.starts_with("$argon2id$"))));
    assert!(domain.catch_all.is_none());
}

#[test]
fn bad_config_files_fail_with_their_expected_text() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/bad_configs") {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let expect = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", path.display()));
        match Config::load(&path) {
            Ok(_) => panic!("{}: parsed, but should fail", path.display()),
            Err(err) => assert!(
                err.to_string().contains(expect),
                "{}:\n  got  {err}\n  want {expect}",
                path.display()
            ),
        }
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} bad configs found");
}
