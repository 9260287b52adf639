//! Who is local and where their mail goes: domains, users, aliases, catch-alls
//! and trusted networks. Built from the config; pure lookups, no I/O.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::{Config, IpNet};
use crate::envelope::{Address, Domain, Route};
use crate::smtp::session::Login;

/// How deep alias chains may go before we call it a loop.
const MAX_ALIAS_DEPTH: usize = 8;

/// The answer to "where does mail for this address go?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// A local domain that knows the address: deliver to these routes.
    Deliver(Vec<Route>),
    /// A local domain without such a user, alias or catch-all.
    UnknownUser,
    /// Not one of our domains: relaying.
    NotLocal,
}

#[derive(Debug)]
struct LocalDomain {
    users: HashMap<String, String>,
    aliases: HashMap<String, Vec<String>>,
    catch_all: Option<String>,
    send_as: HashMap<String, Vec<String>>,
}

/// The local domains and who may relay; see the module docs.
#[derive(Debug)]
pub struct Accounts {
    domains: HashMap<Domain, LocalDomain>,
    primary: Domain,
    trusted: Vec<IpNet>,
}

impl Accounts {
    /// Builds the lookup tables from a validated config.
    pub fn new(config: &Config) -> Accounts {
        let mut domains = HashMap::new();
        let mut primary = None;
        for d in &config.domains {
            let Ok(name) = Domain::parse(&d.name) else {
                continue;
            };
            if d.name == config.primary_domain {
                primary = Some(name.clone());
            }
            domains.insert(
                name,
                LocalDomain {
                    users: d.users.iter().cloned().collect(),
                    aliases: d.aliases.iter().cloned().collect(),
                    catch_all: d.catch_all.clone(),
                    send_as: d.send_as.iter().cloned().collect(),
                },
            );
        }
        let primary = primary
            .or_else(|| Domain::parse(&config.primary_domain).ok())
            .or_else(|| Domain::parse(&config.hostname).ok())
            .unwrap_or_else(|| Domain::parse("localhost").expect("a valid literal domain"));
        Accounts { domains, primary, trusted: config.relay.trusted_networks.clone() }
    }

    /// True when `domain` is one of ours.
    pub fn is_local(&self, domain: &Domain) -> bool {
        self.domains.contains_key(domain)
    }

    /// The domain that completes bare local parts such as `<bob>`.
    pub fn primary_domain(&self) -> &Domain {
        &self.primary
    }

    /// True when `ip` is in one of the trusted networks.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    /// True when `user` (lowercased) is a user of the local `domain`.
    pub fn is_user(&self, user: &str, domain: &Domain) -> bool {
        self.domains.get(domain).is_some_and(|d| d.users.contains_key(user))
    }

    /// The password hash of a local user, if it has one.
    pub fn password_hash(&self, user: &str, domain: &Domain) -> Option<&str> {
        let d = self.domains.get(domain)?;
        d.users.get(&user.to_lowercase()).map(String::as_str).filter(|h| !h.is_empty())
    }

    /// The user a login name (`user@domain`, or a bare `user` of the primary
    /// domain) names, with its password hash; `None` for unknown users and
    /// receive-only ones.
    pub fn login(&self, name: &str) -> Option<(Login, &str)> {
        let (user, domain) = match name.rsplit_once('@') {
            Some((u, d)) => (u, Domain::parse(d).ok()?),
            None => (name, self.primary.clone()),
        };
        let user = user.to_lowercase();
        let hash = self.password_hash(&user, &domain)?;
        Some((Login { user, domain }, hash))
    }

    /// True when a logged-in user may use `sender` as MAIL FROM: their own
    /// address (with any `+tag`), an alias that delivers to them, or what
    /// the domain's `send_as` table grants them.
    pub fn may_send_as(&self, login: &Login, sender: &Address) -> bool {
        let own = Route::Local { user: login.user.clone(), domain: login.domain.clone() };
        if self.is_local(sender.domain()) && self.names(sender.local(), sender.domain()) {
            if let Resolution::Deliver(routes) = self.resolve(sender) {
                if routes.contains(&own) {
                    return true;
                }
            }
        }
        let Some(patterns) = self.domains.get(&login.domain).and_then(|d| d.send_as.get(&login.user)) else {
            return false;
        };
        let addr = sender.to_string().to_lowercase();
        patterns.iter().any(|p| {
            p == "*" || *p == addr || p.strip_prefix("*@").is_some_and(|d| d == sender.domain().as_str())
        })
    }

    /// True when `local` (less any `+tag`) is a user or alias of `domain`
    /// itself, not something only a catch-all (or the implicit postmaster)
    /// would take.
    fn names(&self, local: &str, domain: &Domain) -> bool {
        let Some(d) = self.domains.get(domain) else { return false };
        let lower = local.to_lowercase();
        let name = lower.split_once('+').map_or(lower.as_str(), |(base, _)| base);
        d.users.contains_key(name) || d.aliases.contains_key(name)
    }

    /// Where mail for `addr` goes. `user+tag` is looked up as `user`;
    /// `postmaster` at a local domain always resolves.
    pub fn resolve(&self, addr: &Address) -> Resolution {
        if !self.is_local(addr.domain()) {
            return Resolution::NotLocal;
        }
        let mut routes = Vec::new();
        if self.expand(addr.local(), addr.domain(), 0, &mut routes) {
            Resolution::Deliver(routes)
        } else {
            Resolution::UnknownUser
        }
    }

    /// Adds the routes for `local@domain` (a local domain) to `out`; false when
    /// nothing matches.
    fn expand(&self, local: &str, domain: &Domain, depth: usize, out: &mut Vec<Route>) -> bool {
        let Some(d) = self.domains.get(domain) else {
            return false;
        };
        if depth > MAX_ALIAS_DEPTH {
            return false;
        }
        let lower = local.to_lowercase();
        let name = match lower.split_once('+') {
            Some((base, _tag)) if !base.is_empty() => base,
            _ => lower.as_str(),
        };
        if d.users.contains_key(name) {
            push_unique(out, Route::Local { user: name.to_string(), domain: domain.clone() });
            return true;
        }
        if let Some(targets) = d.aliases.get(name) {
            let mut any = false;
            for t in targets {
                any |= self.expand_target(t, domain, depth + 1, out);
            }
            return any;
        }
        if name == "postmaster" {
            return self.postmaster(domain, depth, out);
        }
        match &d.catch_all {
            Some(t) => self.expand_target(t, domain, depth + 1, out),
            None => false,
        }
    }

    /// An alias or catch-all target: a bare name in `domain`, or a full address.
    fn expand_target(&self, target: &str, domain: &Domain, depth: usize, out: &mut Vec<Route>) -> bool {
        if !target.contains('@') {
            return self.expand(target, domain, depth, out);
        }
        match Address::parse(target) {
            Ok(a) if self.is_local(a.domain()) => self.expand(a.local(), a.domain(), depth, out),
            Ok(a) => {
                push_unique(out, Route::Remote(a));
                true
            }
            Err(_) => false,
        }
    }

    /// `postmaster` at a domain that does not define it: the primary domain's
    /// postmaster, else its first user in name order.
    fn postmaster(&self, domain: &Domain, depth: usize, out: &mut Vec<Route>) -> bool {
        if domain != &self.primary {
            return self.expand("postmaster", &self.primary.clone(), depth + 1, out);
        }
        let Some(d) = self.domains.get(&self.primary) else {
            return false;
        };
        let mut users: Vec<&String> = d.users.keys().collect();
        users.sort();
        match users.first() {
            Some(u) => {
                push_unique(out, Route::Local { user: (*u).clone(), domain: domain.clone() });
                true
            }
            None => false,
        }
    }
}

fn push_unique(out: &mut Vec<Route>, r: Route) {
    if !out.contains(&r) {
        out.push(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
hostname = "mx.example.com"
data_dir = "/tmp/x"
[relay]
trusted_networks = ["127.0.0.0/8", "192.168.1.0/24"]
[domains."example.com"]
users = { alice = "", bob = "" }
aliases = { info = ["alice", "bob"], fwd = "someone@elsewhere.example", team = "info", both = ["alice", "carol@example.org"] }
[domains."example.org"]
users = { carol = "" }
catch_all = "carol"
[domains."empty.example"]
aliases = { loop1 = "loop2", loop2 = "loop1" }
"#;

    fn accounts() -> Accounts {
        Accounts::new(&Config::parse(CONFIG, "test").expect("test config parses"))
    }

    fn local(u: &str, d: &str) -> Route {
        Route::Local { user: u.into(), domain: Domain::parse(d).unwrap() }
    }

    #[test]
    fn resolution_table() {
        let a = accounts();
        let cases: Vec<(&str, Resolution)> = vec![
            ("alice@example.com", Resolution::Deliver(vec![local("alice", "example.com")])),
            ("Alice@EXAMPLE.com", Resolution::Deliver(vec![local("alice", "example.com")])),
            ("alice+news@example.com", Resolution::Deliver(vec![local("alice", "example.com")])),
            (
                "info@example.com",
                Resolution::Deliver(vec![local("alice", "example.com"), local("bob", "example.com")]),
            ),
            (
                "team@example.com",
                Resolution::Deliver(vec![local("alice", "example.com"), local("bob", "example.com")]),
            ),
            (
                "fwd@example.com",
                Resolution::Deliver(vec![Route::Remote(
                    Address::parse("someone@elsewhere.example").unwrap(),
                )]),
            ),
            (
                "both@example.com",
                Resolution::Deliver(vec![local("alice", "example.com"), local("carol", "example.org")]),
            ),
            ("nobody@example.com", Resolution::UnknownUser),
            ("+x@example.com", Resolution::UnknownUser),
            ("alice%evil.example@example.com", Resolution::UnknownUser),
            ("evil.example!alice@example.com", Resolution::UnknownUser),
            ("anything@example.org", Resolution::Deliver(vec![local("carol", "example.org")])),
            ("postmaster@example.com", Resolution::Deliver(vec![local("alice", "example.com")])),
            ("POSTMASTER@example.org", Resolution::Deliver(vec![local("alice", "example.com")])),
            ("loop1@empty.example", Resolution::UnknownUser),
            ("alice@elsewhere.example", Resolution::NotLocal),
        ];
        for (addr, want) in cases {
            assert_eq!(a.resolve(&Address::parse(addr).unwrap()), want, "{addr}");
        }
        // A quoted local part holding '@' is just an unknown local user.
        let quoted = Address::new("alice@elsewhere.example", Domain::parse("example.com").unwrap());
        assert_eq!(a.resolve(&quoted), Resolution::UnknownUser);
    }

    #[test]
    fn trusted_networks() {
        let a = accounts();
        assert!(a.is_trusted("127.0.0.1".parse().unwrap()));
        assert!(a.is_trusted("192.168.1.77".parse().unwrap()));
        assert!(!a.is_trusted("192.168.2.1".parse().unwrap()));
        assert!(!a.is_trusted("::1".parse().unwrap()));
        assert_eq!(a.primary_domain().as_str(), "example.com");
    }
}
