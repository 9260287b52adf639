//! LIST and LSUB: the folders and subscriptions a pattern names.

use super::*;

impl Session {
    pub(super) fn list(
        &mut self,
        tag: &str,
        reference: &[u8],
        patterns: &[Vec<u8>],
        o: &ListOptions,
        lsub: bool,
        out: &mut Output,
    ) {
        let verb = if lsub { "LSUB" } else { "LIST" };
        if patterns.len() == 1 && patterns[0].is_empty() {
            out.line(&format!("* {verb} (\\Noselect) \"/\" \"\""));
            return ok(out, tag, &format!("{verb} completed"));
        }
        let names = match folder::list(&self.maildir) {
            Ok(n) => n,
            Err(e) => return no(out, tag, &format!("[SERVERBUG] {e}")),
        };
        let subscribed = subscriptions::read(&self.maildir).unwrap_or_default();
        let only_subscribed = lsub || o.subscribed;
        // LSUB lists subscriptions, folders or not; LIST the folders. Both
        // show the parents a deeper name implies, which have no directory.
        let base: Vec<&String> =
            if only_subscribed { subscribed.iter().collect() } else { names.iter().collect() };
        let mut all: Vec<(String, bool)> = base.iter().map(|n| (n.to_string(), names.contains(n))).collect();
        for n in base {
            let mut at = 0;
            while let Some(i) = n[at..].find('/') {
                let parent = &n[..at + i];
                if !all.iter().any(|(a, _)| a == parent) {
                    all.push((parent.to_string(), names.iter().any(|x| x == parent)));
                }
                at += i + 1;
            }
        }
        all.sort();
        let reference = String::from_utf8_lossy(reference).into_owned();
        let wanted: Vec<String> = patterns
            .iter()
            .map(|p| {
                let p = String::from_utf8_lossy(p);
                let p = mutf7::decode(&p).unwrap_or_else(|_| p.into_owned());
                format!("{reference}{p}")
            })
            .collect();
        let below = |name: &str, n: &str| {
            n.len() > name.len() && n.starts_with(name) && n.as_bytes()[name.len()] == b'/'
        };
        for (name, exists) in &all {
            if !wanted.iter().any(|p| wildcard(p, name)) {
                continue;
            }
            let is_subscribed = subscribed.iter().any(|s| s == name);
            // Only a subscription the patterns do not reach themselves.
            let subscribed_below =
                subscribed.iter().any(|n| below(name, n) && !wanted.iter().any(|p| wildcard(p, n)));
            // A parent of a subscription is shown by LSUB only where `%`
            // stopped short of the subscription (RFC 3501 6.3.9), and by
            // LIST (SUBSCRIBED RECURSIVEMATCH) with CHILDINFO (RFC 5258).
            let implied_parent = lsub && !is_subscribed && wanted.iter().any(|p| p.contains('%'));
            let childinfo = o.subscribed && o.recursive && subscribed_below;
            if only_subscribed && !is_subscribed && !implied_parent && !childinfo {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if implied_parent || (!exists && !lsub && !o.subscribed) {
                attrs.push("\\Noselect");
            }
            if !exists && o.subscribed && is_subscribed {
                attrs.push("\\NonExistent");
            }
            let children = names.iter().any(|n| below(name, n));
            if !lsub && (!o.subscribed || o.return_children) {
                attrs.push(if children { "\\HasChildren" } else { "\\HasNoChildren" });
            }
            let special = SPECIAL.iter().find(|(n, _)| n == name).map(|(_, a)| *a);
            if o.special_use_only && special.is_none() {
                continue;
            }
            if let Some(a) = special {
                if !lsub {
                    attrs.push(a);
                }
            }
            if is_subscribed && (o.subscribed || o.return_subscribed) {
                attrs.push("\\Subscribed");
            }
            let shown = mailbox(&mutf7::encode(name));
            let info = if childinfo { " (CHILDINFO (\"SUBSCRIBED\"))" } else { "" };
            out.line(&format!("* {verb} ({}) \"/\" {shown}{info}", attrs.join(" ")));
            if !o.status.is_empty() && *exists {
                if let Ok(line) = self.status_line(mutf7::encode(name).as_bytes(), &o.status) {
                    out.line(&line);
                }
            }
        }
        ok(out, tag, &format!("{verb} completed"));
    }
}

/// The longest LIST pattern matched; longer ones match nothing (no folder
/// name is that long, and the match costs its length times the name's).
const MAX_PATTERN: usize = 1024;

/// Whether an IMAP pattern matches `name`: `*` anything, `%` anything but
/// the delimiter; `INBOX` without regard to case. A table walk, linear in
/// the pattern times the name, whatever the wildcards.
pub fn wildcard(pattern: &str, name: &str) -> bool {
    let mut p: Vec<char> = pattern.chars().collect();
    if p.len() > MAX_PATTERN {
        return false;
    }
    if name == "INBOX" && p.len() >= 5 && p[..5].iter().collect::<String>().eq_ignore_ascii_case("INBOX") {
        for c in &mut p[..5] {
            *c = c.to_ascii_uppercase();
        }
    }
    let n: Vec<char> = name.chars().collect();
    // row[j]: the pattern so far matches the first j characters of the name.
    let mut row = vec![false; n.len() + 1];
    row[0] = true;
    for &c in &p {
        let mut next = vec![false; n.len() + 1];
        for j in 0..=n.len() {
            next[j] = match c {
                '*' => row[j] || (j > 0 && next[j - 1]),
                '%' => row[j] || (j > 0 && next[j - 1] && n[j - 1] != '/'),
                _ => j > 0 && row[j - 1] && n[j - 1] == c,
            };
        }
        row = next;
    }
    row[n.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_list_says() {
        assert!(wildcard("*", "a/b"));
        assert!(wildcard("%", "a"));
        assert!(!wildcard("%", "a/b"));
        assert!(wildcard("a/%", "a/b"));
        assert!(wildcard("inbox", "INBOX"));
        assert!(!wildcard("a", "ab"));
        assert!(wildcard("S*t", "Sent"));
    }
}
