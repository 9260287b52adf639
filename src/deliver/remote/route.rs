//! Where a message goes and how it gets there: the smarthost for a domain or
//! its MX hosts in preference order, each address in turn; never ourselves;
//! implicit TLS, STARTTLS or (to an MX whose handshake failed) plaintext; and
//! on to the next host when one cannot take the message.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_net::TcpStream;
use futures_rustls::TlsConnector;
use rustls_pki_types::ServerName;
use smol::future::FutureExt as _;

use super::link::{Link, TLS_FAILED};
use super::{Abort, Client, Outgoing, RecipientResult, miss, next, read_password};
use crate::config::{Smarthost, SmarthostTls};
use crate::deliver::{DeliveryError, loops};
use crate::dns::DnsError;
use crate::logtext::{quoted, word};
use crate::smtp::client::{EnhancedCode, Response};
use crate::stream::{Stream, timeout};

impl Client {
    /// Whether connecting to any of `addrs` at `port` would reach one of
    /// our own listeners.
    fn reaches_us(&self, addrs: &[IpAddr], port: u16) -> bool {
        addrs
            .iter()
            .any(|ip| loops::reaches_listener(SocketAddr::new(*ip, port), &self.listeners, &loops::is_local))
    }

    /// The smarthost for mail to `domain`, if one is configured.
    pub(super) fn smarthost(&self, domain: &str) -> Option<&Smarthost> {
        self.outbound
            .domains
            .iter()
            .find(|(d, _)| d.as_str() == domain)
            .map(|(_, h)| h)
            .or(self.outbound.relay.as_ref())
    }

    /// To the MX hosts of `domain`, each address in turn.
    pub(super) async fn via_mx(
        &self,
        key: &str,
        domain: &str,
        msg: &Outgoing<'_>,
    ) -> Result<Vec<RecipientResult>, DeliveryError> {
        let hosts = self.resolver.mx(domain).await.map_err(|e| match e {
            DnsError::NoSuchDomain(s) => DeliveryError::ours(EnhancedCode::new(5, 1, 2), s),
            DnsError::NullMx(s) => DeliveryError::ours(EnhancedCode::new(5, 1, 10), s),
            DnsError::Temporary(s) => DeliveryError::ours(EnhancedCode::new(4, 4, 3), s),
        })?;
        let port = self.outbound.mx_port;
        let (hosts, us) = loops::before_us(hosts, |h| {
            loops::is_our_name(&h.name, &self.hostname) || self.reaches_us(&h.addrs, port)
        });
        if let (true, Some(us)) = (hosts.is_empty(), us) {
            return Err(DeliveryError::ours(
                EnhancedCode::new(5, 4, 6),
                format!("mail for {domain} loops back to myself: its MX host {} is this server", us.name),
            ));
        }
        let mut last = DeliveryError::ours(
            EnhancedCode::new(4, 4, 1),
            format!("no MX host of {domain} could be reached"),
        );
        for host in &hosts {
            for ip in &host.addrs {
                let addr = SocketAddr::new(*ip, self.outbound.mx_port);
                // Opportunistic TLS may fall back to plaintext with the same
                // host when the handshake fails (RFC 7435); smarthosts never do.
                for starttls in [true, false] {
                    match self.session(key, addr, &host.name, None, msg, starttls).await {
                        Ok(results) => return Ok(results),
                        Err(Abort::NextHost(e)) => {
                            log::debug!("outbound: {} [{addr}]: {}", word(&host.name), quoted(e.text()));
                            let handshake = e.text().starts_with(TLS_FAILED);
                            last = e.context(format!("{} [{addr}]", host.name));
                            if !(starttls && handshake) {
                                break;
                            }
                        }
                        Err(Abort::All(e)) => return Err(e),
                    }
                }
            }
        }
        Err(last.transient())
    }

    /// To the smarthost `host`, each of its addresses in turn.
    pub(super) async fn via_smarthost(
        &self,
        key: &str,
        domain: &str,
        host: &Smarthost,
        msg: &Outgoing<'_>,
    ) -> Result<Vec<RecipientResult>, DeliveryError> {
        let lookup_failed = |e: &dyn std::fmt::Display| {
            DeliveryError::ours(
                EnhancedCode::new(4, 4, 3),
                format!("cannot look up smarthost {}: {e}", host.host),
            )
        };
        let addrs: Vec<IpAddr> = if let Ok(ip) = host.host.parse::<IpAddr>() {
            vec![ip]
        } else if self.outbound.nameservers.is_empty() {
            // The system's way, /etc/hosts included.
            async_dns::lookup(&host.host)
                .await
                .map(|iter| iter.map(|a| a.ip_address).collect())
                .map_err(|e| lookup_failed(&e))?
        } else {
            self.resolver.addrs(&host.host).await.map_err(|e| lookup_failed(&e))?
        };
        // Only the address counts: another server on this host, at another
        // port, may well be named like us.
        if self.reaches_us(&addrs, host.port) {
            return Err(DeliveryError::ours(
                EnhancedCode::new(5, 4, 6),
                format!(
                    "mail for {domain} loops back to myself: smarthost {}:{} is this server",
                    host.host, host.port
                ),
            ));
        }
        let mut last = DeliveryError::ours(
            EnhancedCode::new(4, 4, 1),
            format!("smarthost {} has no address", host.host),
        );
        for ip in addrs {
            let addr = SocketAddr::new(ip, host.port);
            match self.session(key, addr, &host.host, Some(host), msg, true).await {
                Ok(results) => return Ok(results),
                Err(Abort::NextHost(e)) => {
                    log::warn!("outbound: smarthost {} [{addr}]: {}", host.host, quoted(e.text()));
                    last = e.context(format!("smarthost {} [{addr}]", host.host));
                }
                Err(Abort::All(e)) => return Err(e),
            }
        }
        Err(last.transient())
    }

    /// One SMTP conversation with one server address: connected, greeted,
    /// encrypted as the route asks, logged in, and the message sent.
    async fn session(
        &self,
        key: &str,
        addr: SocketAddr,
        name: &str,
        smarthost: Option<&Smarthost>,
        msg: &Outgoing<'_>,
        starttls: bool,
    ) -> Result<Vec<RecipientResult>, Abort> {
        let o = &self.outbound;
        let (mut link, ehlo) = self.open(addr, name, smarthost, starttls).await?;
        let results = link.transaction(&ehlo, msg, o.command_timeout, o.data_timeout).await?;
        // QUIT comes later: the next message to this destination may use it.
        self.pool.keep(key, link, ehlo);
        Ok(results)
    }

    /// A connection ready for a transaction, and the EHLO reply that says
    /// what the server offers.
    async fn open(
        &self,
        addr: SocketAddr,
        name: &str,
        smarthost: Option<&Smarthost>,
        starttls: bool,
    ) -> Result<(Link, Response), Abort> {
        let o = &self.outbound;
        let tcp = TcpStream::connect(addr)
            .or(timeout(o.connect_timeout))
            .await
            .map_err(|e| miss(format!("cannot connect: {e}")))?;
        // Every write is a whole command, a pipelined group or a large block
        // of the message: nothing for Nagle's algorithm to gather, and its
        // wait for an ACK stalls each transaction by the peer's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| miss(format!("`{name}` is not a valid TLS server name")))?;
        let mut link = if smarthost.is_some_and(|h| h.tls == SmarthostTls::Implicit) {
            let tls = TlsConnector::from(Arc::clone(&self.tls.verified))
                .connect(server_name.clone(), tcp)
                .or(timeout(o.connect_timeout))
                .await
                .map_err(|e| miss(format!("{TLS_FAILED}: {e}")))?;
            Link::new(Stream::Tls(Box::new(tls)), name)
        } else {
            Link::new(Stream::Plain(tcp), name)
        };
        // RFC 5321 4.5.3.2.1: up to 5 minutes for the greeting.
        let greeting = link.reply(o.command_timeout).await.map_err(next)?;
        if greeting.code != 220 {
            return Err(link.refused("greeting", &greeting));
        }
        let mut ehlo = link.ehlo(&self.hostname, o.command_timeout).await?;
        let want_tls = matches!(smarthost, Some(h) if h.tls == SmarthostTls::StartTls);
        if link.is_plain() && (want_tls || (starttls && ehlo.has("STARTTLS"))) {
            if !ehlo.has("STARTTLS") {
                return Err(miss("the smarthost does not offer STARTTLS; refusing to send in the clear"));
            }
            let r = link.command("STARTTLS", o.command_timeout).await.map_err(next)?;
            if r.code != 220 {
                if want_tls {
                    return Err(link.refused("STARTTLS refused", &r));
                }
                // Opportunistic: go on without TLS, as the server asked.
            } else {
                let config = if want_tls { &self.tls.verified } else { &self.tls.opportunistic };
                link.start_tls(config, server_name, o.connect_timeout).await?;
                ehlo = link.ehlo(&self.hostname, o.command_timeout).await?;
            }
        }
        if let Some(h) = smarthost {
            if let (Some(user), Some(file)) = (&h.username, &h.password_file) {
                let password = read_password(file).map_err(miss)?;
                link.login(&ehlo, user, &password, o.command_timeout).await?;
            }
        }
        Ok((link, ehlo))
    }
}
