//! The reader of the `[domains."…"]` tables and `primary_domain`: local domains,
//! their users, aliases, catch-alls and `send_as` grants.

use toml::de::DeValue;

use super::ConfigError;
use super::names::{dns_name, local_name, sender_pattern, target};
use super::reader::{Item, Reader, Section};
use super::sections::DomainConfig;
use crate::envelope::Domain;

const DOMAIN_KEYS: &[&str] = &["users", "aliases", "catch_all", "send_as"];

pub(super) fn read_domains(r: &Reader<'_>, root: &Section<'_>) -> Result<Vec<DomainConfig>, ConfigError> {
    const NONE: &str = "no domains are configured; add at least one table like [domains.\"example.com\"]";
    let Some(item) = root.get("domains") else {
        return Err(r.error(None, "domains", NONE));
    };
    let mut domains: Vec<DomainConfig> = Vec::new();
    for (key, item) in r.table(&item)?.entries() {
        let name = dns_name(key).map_err(|problem| r.at_key(&item, problem))?;
        if domains.iter().any(|d| d.name == name) {
            let problem = format!("domain `{name}` is listed twice (domain names are not case-sensitive)");
            return Err(r.at_key(&item, problem));
        }
        let section = r.section(&item, DOMAIN_KEYS)?;
        domains.push(read_domain(r, name, &section)?);
    }
    if domains.is_empty() {
        return Err(r.at(&item, NONE));
    }
    Ok(domains)
}

fn read_domain(r: &Reader<'_>, name: Domain, section: &Section<'_>) -> Result<DomainConfig, ConfigError> {
    let mut users: Vec<(String, Option<String>)> = Vec::new();
    if let Some(item) = section.get("users") {
        for (key, item) in r.table(&item)?.entries() {
            let local = local_name(key).map_err(|problem| r.at_key(&item, problem))?;
            if users.iter().any(|(user, _)| *user == local) {
                let problem = format!("user `{local}` is listed twice (names are not case-sensitive)");
                return Err(r.at_key(&item, problem));
            }
            // "" is a user who only receives mail.
            let hash = match r.string(&item)? {
                "" => None,
                hash if hash.starts_with("$argon2id$") => Some(hash.to_string()),
                // Never echo the value: people paste plain passwords here.
                _ => {
                    return Err(r.at(
                        &item,
                        format!(
                            "not an argon2id password hash (it must start with \"$argon2id$\"; make one with `postern passwd {local}@{name}`), \
                             or \"\" for a user who only receives mail; the value is not shown in case it is a password"
                        ),
                    ));
                }
            };
            users.push((local, hash));
        }
    }

    // First every alias name, so a target may name an alias defined further down.
    let mut pending: Vec<(String, Vec<Item<'_>>)> = Vec::new();
    if let Some(item) = section.get("aliases") {
        for (key, item) in r.table(&item)?.entries() {
            let alias = local_name(key).map_err(|problem| r.at_key(&item, problem))?;
            let clash = if users.iter().any(|(user, _)| *user == alias) {
                Some(format!("alias `{alias}` has the same name as a user; rename one of them"))
            } else if pending.iter().any(|(other, _)| *other == alias) {
                Some(format!("alias `{alias}` is listed twice (names are not case-sensitive)"))
            } else {
                None
            };
            if let Some(problem) = clash {
                return Err(r.at_key(&item, problem));
            }
            let targets = match item.value.get_ref() {
                DeValue::String(_) => vec![item.clone()],
                DeValue::Array(_) => r.array(&item)?,
                _ => return Err(r.wrong_type(&item, "a target string or an array of targets")),
            };
            if targets.is_empty() {
                return Err(r.at(&item, "an alias needs at least one target"));
            }
            pending.push((alias, targets));
        }
    }

    // "postmaster" is always accepted, so it is a valid target without an entry.
    let is_local = |local: &str| {
        local == "postmaster"
            || users.iter().any(|(user, _)| user == local)
            || pending.iter().any(|(alias, _)| alias == local)
    };
    let mut aliases = Vec::new();
    for (alias, items) in &pending {
        let mut targets = Vec::new();
        for item in items {
            targets.push(r.parsed(item, |s| target(s, name.as_str(), is_local))?);
        }
        aliases.push((alias.clone(), targets));
    }
    let catch_all = match section.get("catch_all") {
        Some(item) => Some(r.parsed(&item, |s| target(s, name.as_str(), is_local))?),
        None => None,
    };
    let mut send_as = Vec::new();
    if let Some(item) = section.get("send_as") {
        for (key, item) in r.table(&item)?.entries() {
            let user = local_name(key).map_err(|problem| r.at_key(&item, problem))?;
            if !users.iter().any(|(u, _)| *u == user) {
                return Err(r.at_key(&item, format!("`{user}` is not a user of {name}")));
            }
            let mut patterns = Vec::new();
            for element in r.array(&item)? {
                patterns.push(r.parsed(&element, sender_pattern)?);
            }
            send_as.push((user, patterns));
        }
    }
    Ok(DomainConfig { name, users, aliases, catch_all, send_as })
}

pub(super) fn read_primary_domain(
    r: &Reader<'_>,
    root: &Section<'_>,
    domains: &[DomainConfig],
) -> Result<Domain, ConfigError> {
    let Some(item) = root.get("primary_domain") else {
        return domains
            .first()
            .map(|d| d.name.clone())
            .ok_or_else(|| r.error(None, "domains", "no domains are configured"));
    };
    let name = r.parsed(&item, dns_name)?;
    if !domains.iter().any(|d| d.name == name) {
        let names: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
        return Err(
            r.at(&item, format!("`{name}` is not one of the configured domains ({})", names.join(", ")))
        );
    }
    Ok(name)
}
