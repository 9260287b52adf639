//! The config parser: any text, never a panic; errors point inside the text;
//! a config that parses builds its lookups; sizes, durations and networks
//! read back from their own spelling.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::Settings;
use postern::config::{Config, IpNet, parse_duration, parse_size};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.toml") {
        Ok(config) => {
            assert_eq!(config.source, "fuzz.toml");
            let _ = Settings::new(config);
        }
        Err(e) => {
            assert_eq!(e.file, "fuzz.toml");
            if let Some(line) = e.line {
                assert!(line >= 1 && line <= text.split('\n').count(), "error on line {line} of {text:?}");
            }
            assert!(!e.problem.is_empty());
            let _ = e.to_string();
        }
    }

    if let Ok(n) = parse_size(text) {
        assert_eq!(parse_size(&n.to_string()), Ok(n));
    }
    if let Ok(d) = parse_duration(text) {
        assert_eq!(parse_duration(&format!("{}s", d.as_secs())), Ok(d));
    }
    if let Ok(net) = text.parse::<IpNet>() {
        let shown = net.to_string();
        assert_eq!(shown.parse::<IpNet>(), Ok(net), "{text:?} shown as {shown:?}");
        assert!(net.contains(net.addr()));
    }
});
