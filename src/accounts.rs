//! Who is local and where their mail goes: domains, users, aliases, catch-alls
//! and trusted networks. Built from the config; pure lookups, no I/O.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::config::{Config, IpNet};
use crate::envelope::{Address, Domain, Route};

/// How deep alias chains may go before we call it a loop.
const MAX_ALIAS_DEPTH: usize = 8;

/// A logged-in user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// The user name, lowercased.
    pub user: String,
    /// The user's domain.
    pub domain: Domain,
}

/// The most delivery recipients one address may expand to, and one
/// transaction may gather (Postfix's `virtual_alias_expansion_limit` is the
/// same figure). Past it the RCPT gets `452 4.5.3`, so each message's
/// recipient list, and the work to build it, stays bounded.
pub const MAX_EXPANDED_RECIPIENTS: usize = 1000;

/// The answer to "where does mail for this address go?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// A local domain that knows the address: deliver to these routes.
    Deliver(Vec<Route>),
    /// A local domain without such a user, alias or catch-all.
    UnknownUser,
    /// Not one of our domains: relaying.
    NotLocal,
    /// A local address that expands to more than [`MAX_EXPANDED_RECIPIENTS`].
    TooMany,
}

#[derive(Debug)]
struct LocalDomain {
    /// User name to password hash; `None` for a user who cannot log in.
    users: HashMap<String, Option<String>>,
    aliases: HashMap<String, Vec<Target>>,
    catch_all: Option<Target>,
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
        for d in &config.domains {
            domains.insert(
                d.name.clone(),
                LocalDomain {
                    users: d.users.iter().cloned().collect(),
                    aliases: d
                        .aliases
                        .iter()
                        .map(|(name, targets)| {
                            (name.clone(), targets.iter().filter_map(|t| Target::parse(t, config)).collect())
                        })
                        .collect(),
                    catch_all: d.catch_all.as_deref().and_then(|t| Target::parse(t, config)),
                    send_as: d.send_as.iter().cloned().collect(),
                },
            );
        }
        let primary = config.primary_domain.clone();
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
        d.users.get(&user.to_lowercase()).and_then(Option::as_deref)
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
    ///
    /// The work is linear in the size of the alias tables whatever their
    /// shape: each alias is walked at most once per depth, duplicates are
    /// found with a set, and the walk stops past [`MAX_EXPANDED_RECIPIENTS`].
    pub fn resolve(&self, addr: &Address) -> Resolution {
        self.resolve_counted(addr).0
    }

    /// [`Accounts::resolve`], and how many steps the walk took.
    fn resolve_counted(&self, addr: &Address) -> (Resolution, usize) {
        if !self.is_local(addr.domain()) {
            return (Resolution::NotLocal, 0);
        }
        let mut out = Expansion::default();
        let found = self.expand(addr.local(), addr.domain(), 0, &mut out);
        let r = if out.too_many {
            Resolution::TooMany
        } else if found {
            Resolution::Deliver(out.routes)
        } else {
            Resolution::UnknownUser
        };
        (r, out.steps)
    }

    /// Adds the routes for `local@domain` (a local domain) to `out`; false when
    /// nothing matches.
    fn expand(&self, local: &str, domain: &Domain, depth: usize, out: &mut Expansion) -> bool {
        self.expand_name(&lookup_name(local), domain, depth, out)
    }

    /// [`Accounts::expand`] for a name already lowercased and without its tag.
    fn expand_name(&self, name: &str, domain: &Domain, depth: usize, out: &mut Expansion) -> bool {
        out.steps += 1;
        let Some(d) = self.domains.get(domain) else {
            return false;
        };
        if depth > MAX_ALIAS_DEPTH || out.too_many {
            return false;
        }
        if d.users.contains_key(name) {
            return out.push(Route::Local { user: name.to_string(), domain: domain.clone() });
        }
        if let Some(targets) = d.aliases.get(name) {
            // Walked before from as high up the chain or higher: whatever it
            // delivers to is in `out` already.
            let key = (domain.clone(), name.to_string());
            if out.walked.get(&key).is_some_and(|&d| d <= depth) {
                return out.found.contains(&key);
            }
            out.walked.insert(key.clone(), depth);
            let mut any = false;
            for t in targets {
                any |= self.expand_target(t, domain, depth + 1, out);
                if out.too_many {
                    return false;
                }
            }
            if any {
                out.found.insert(key);
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

    /// An alias or catch-all target, read from `domain`'s table.
    fn expand_target(&self, target: &Target, domain: &Domain, depth: usize, out: &mut Expansion) -> bool {
        match target {
            Target::Here(name) => self.expand_name(name, domain, depth, out),
            Target::Local(name, d) => self.expand_name(name, d, depth, out),
            Target::Remote(a) => out.push(Route::Remote(a.clone())),
        }
    }

    /// `postmaster` at a domain that does not define it: the primary domain's
    /// postmaster, else its first user in name order.
    fn postmaster(&self, domain: &Domain, depth: usize, out: &mut Expansion) -> bool {
        if domain != &self.primary {
            return self.expand("postmaster", &self.primary.clone(), depth + 1, out);
        }
        let Some(d) = self.domains.get(&self.primary) else {
            return false;
        };
        match d.users.keys().min() {
            Some(u) => out.push(Route::Local { user: u.clone(), domain: domain.clone() }),
            None => false,
        }
    }
}

/// The name an address's local part is looked up by: lowercased, less any
/// `+tag` (a local part that starts with `+` is looked up whole).
fn lookup_name(local: &str) -> String {
    let mut lower = local.to_lowercase();
    if let Some(i) = lower.find('+').filter(|&i| i > 0) {
        lower.truncate(i);
    }
    lower
}

/// An alias or catch-all target, parsed once when the tables are built so a
/// walk through thousands of them only looks things up.
#[derive(Debug)]
enum Target {
    /// A bare name in the alias's own domain, as looked up.
    Here(String),
    /// A full address at a local domain: the name as looked up, and the domain.
    Local(String, Domain),
    /// A full address elsewhere.
    Remote(Address),
}

impl Target {
    /// `None` for a target that is not an address; the config refuses those.
    fn parse(target: &str, config: &Config) -> Option<Target> {
        if !target.contains('@') {
            return Some(Target::Here(lookup_name(target)));
        }
        let a = Address::parse(target).ok()?;
        if config.domains.iter().any(|d| &d.name == a.domain()) {
            Some(Target::Local(lookup_name(a.local()), a.domain().clone()))
        } else {
            Some(Target::Remote(a))
        }
    }
}

/// The routes one address expands to, gathered without repeats.
#[derive(Default)]
struct Expansion {
    routes: Vec<Route>,
    seen: HashSet<Route>,
    /// Aliases walked so far, with the lowest depth each was walked from.
    walked: HashMap<(Domain, String), usize>,
    /// The walked aliases that delivered somewhere.
    found: HashSet<(Domain, String)>,
    /// More than [`MAX_EXPANDED_RECIPIENTS`]: the walk stopped.
    too_many: bool,
    /// Addresses looked at, for the tests of the walk's cost.
    steps: usize,
}

impl Expansion {
    /// Adds `r` unless it is there already; true (a match) unless over the cap.
    fn push(&mut self, r: Route) -> bool {
        if self.seen.contains(&r) {
            return true;
        }
        if self.routes.len() == MAX_EXPANDED_RECIPIENTS {
            self.too_many = true;
            return false;
        }
        self.seen.insert(r.clone());
        self.routes.push(r);
        true
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
    fn recipients_resolve_to_users_aliases_catch_alls_or_refusals() {
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

    /// A config whose `example.com` has these aliases, written as TOML.
    fn with_aliases(aliases: &str) -> Accounts {
        let text = format!(
            "hostname = \"mx.example.com\"\ndata_dir = \"/tmp/x\"\n[domains.\"example.com\"]\n\
             users = {{ alice = \"\", bob = \"\" }}\naliases = {{ {aliases} }}\n"
        );
        Accounts::new(&Config::parse(&text, "test").expect("test config parses"))
    }

    fn quoted(names: impl Iterator<Item = String>) -> String {
        names.map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
    }

    #[test]
    fn expansion_is_capped_and_deduplicated_in_linear_work() {
        let big = quoted((0..5000).map(|i| format!("u{i}@remote.example")));
        let wide = quoted((0..MAX_EXPANDED_RECIPIENTS).map(|i| format!("w{i}@remote.example")));
        let dups = quoted((0..5000).map(|i| ["alice", "Bob", "ALICE", "bob@example.com"][i % 4].to_string()));
        // Each level names the next fifty times: 50^4 paths to alice, one walk.
        let tree = "l0 = [LIST1], l1 = [LIST2], l2 = [LIST3], l3 = [\"alice\"]"
            .replace("LIST1", &quoted(std::iter::repeat_n("l1".to_string(), 50)))
            .replace("LIST2", &quoted(std::iter::repeat_n("l2".to_string(), 50)))
            .replace("LIST3", &quoted(std::iter::repeat_n("l3".to_string(), 50)));
        let a = with_aliases(&format!(
            "big = [{big}], wide = [{wide}], dups = [{dups}], {tree}, both = [\"wide\", \"alice\"]"
        ));
        let at = |s: &str| Address::parse(&format!("{s}@example.com")).unwrap();

        let (r, steps) = a.resolve_counted(&at("big"));
        assert_eq!(r, Resolution::TooMany);
        assert!(steps <= MAX_EXPANDED_RECIPIENTS + 2, "{steps} steps");

        let (r, steps) = a.resolve_counted(&at("wide"));
        assert!(matches!(&r, Resolution::Deliver(v) if v.len() == MAX_EXPANDED_RECIPIENTS));
        assert!(steps <= MAX_EXPANDED_RECIPIENTS + 1, "{steps} steps");
        assert_eq!(a.resolve(&at("both")), Resolution::TooMany);

        let (r, steps) = a.resolve_counted(&at("dups"));
        assert_eq!(r, Resolution::Deliver(vec![local("alice", "example.com"), local("bob", "example.com")]));
        assert!(steps <= 5001, "{steps} steps");

        let (r, steps) = a.resolve_counted(&at("l0"));
        assert_eq!(r, Resolution::Deliver(vec![local("alice", "example.com")]));
        assert!(steps <= 4 * 50 + 2, "{steps} steps");
    }

    #[test]
    fn alias_loops_and_diamonds_resolve_as_before() {
        let a = with_aliases(
            "a = [\"alice\", \"b\"], b = [\"a\"], x = [\"y\"], y = [\"x\"], \
             top = [\"left\", \"right\"], left = [\"bob\"], right = [\"bob\", \"alice\"], \
             d0 = \"d1\", d1 = \"d2\", d2 = \"d3\", d3 = \"d4\", d4 = \"d5\", d5 = \"d6\", d6 = \"d7\", \
             d7 = \"alice\", d8 = \"d0\", mix = [\"d8\", \"d1\"]",
        );
        let at = |s: &str| a.resolve(&Address::parse(&format!("{s}@example.com")).unwrap());
        assert_eq!(at("a"), Resolution::Deliver(vec![local("alice", "example.com")]));
        assert_eq!(at("b"), Resolution::Deliver(vec![local("alice", "example.com")]));
        assert_eq!(at("x"), Resolution::UnknownUser);
        assert_eq!(
            at("top"),
            Resolution::Deliver(vec![local("bob", "example.com"), local("alice", "example.com")])
        );
        // Eight hops reach alice; nine are taken for a loop. `mix` meets d1
        // too deep first, then high enough.
        assert_eq!(at("d0"), Resolution::Deliver(vec![local("alice", "example.com")]));
        assert_eq!(at("d8"), Resolution::UnknownUser);
        assert_eq!(at("mix"), Resolution::Deliver(vec![local("alice", "example.com")]));
    }

    #[test]
    fn only_listed_networks_are_trusted_and_the_first_domain_is_primary() {
        let a = accounts();
        assert!(a.is_trusted("127.0.0.1".parse().unwrap()));
        assert!(a.is_trusted("192.168.1.77".parse().unwrap()));
        assert!(!a.is_trusted("192.168.2.1".parse().unwrap()));
        assert!(!a.is_trusted("::1".parse().unwrap()));
        assert_eq!(a.primary_domain().as_str(), "example.com");
    }
}
