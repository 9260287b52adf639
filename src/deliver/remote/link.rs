//! The SMTP conversation with one server over one connection: commands and
//! replies within their time limits, EHLO, AUTH, and the mail transaction
//! (MAIL, RCPT, DATA, the message), pipelined when the server offers it.
//! Each refusal is typed here, where its reply is read.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_net::TcpStream;
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{Abort, Outgoing, RecipientResult, miss, next};
use crate::auth::base64_encode;
use crate::deliver::DeliveryError;
use crate::smtp::client::{DotStuffer, EnhancedCode, ReplyReader, Response};
use crate::stream::{Stream, timeout};

/// How a failed handshake is reported, and recognised for the fallback.
pub(super) const TLS_FAILED: &str = "TLS handshake failed";

/// The connection, before or after TLS.
type Io = Stream<TlsStream<TcpStream>>;

/// One connection to one server, and where the conversation on it stands.
pub(super) struct Link {
    io: Io,
    replies: ReplyReader,
    /// Set when an exchange failed midway; such a connection is not reused.
    broken: bool,
    /// The server's name, as looked up or configured: the remote MTA of
    /// every refusal read here.
    peer: String,
}

impl Link {
    /// A conversation with `peer` over `io`, nothing said yet.
    pub(super) fn new(io: Io, peer: &str) -> Link {
        Link { io, replies: ReplyReader::default(), broken: false, peer: peer.to_string() }
    }

    /// Whether the connection may carry another transaction: nothing went
    /// wrong, and no reply nobody asked for is waiting.
    pub(super) fn reusable(&self) -> bool {
        !self.broken && self.replies.is_empty()
    }

    /// Whether TLS is still to come on this connection.
    pub(super) fn is_plain(&self) -> bool {
        matches!(self.io, Stream::Plain(_))
    }

    /// A refusal, or an acceptance, read from this server, for one recipient.
    fn outcome(&self, reply: &Response) -> RecipientResult {
        if reply.class() == 2 { Ok(reply.text()) } else { Err(DeliveryError::from_reply(reply, &self.peer)) }
    }

    /// A reply that stops this server from taking the message now, with
    /// what it answered.
    pub(super) fn refused(&self, what: &str, reply: &Response) -> Abort {
        Abort::NextHost(DeliveryError::from_reply(reply, &self.peer).transient().context(what))
    }

    /// A QUIT if the socket takes it at once, without waiting for the reply
    /// of a server that may be gone.
    pub(super) async fn quit_now(&mut self) {
        let _ = self.io.write_all(b"QUIT\r\n").or(timeout(Duration::from_millis(50))).await;
    }

    async fn send(&mut self, bytes: &[u8], limit: Duration) -> io::Result<()> {
        let result = async {
            self.io.write_all(bytes).or(timeout(limit)).await?;
            self.io.flush().or(timeout(limit)).await
        }
        .await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// One whole reply, which must arrive within `limit` however slowly its
    /// bytes trickle in.
    pub(super) async fn reply(&mut self, limit: Duration) -> io::Result<Response> {
        let result = self.reply_within(Instant::now() + limit).await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    async fn reply_within(&mut self, deadline: Instant) -> io::Result<Response> {
        loop {
            if let Some(reply) = self.replies.next_reply()? {
                return Ok(reply);
            }
            let mut chunk = [0u8; 4096];
            let left = deadline.saturating_duration_since(Instant::now());
            let n = self.io.read(&mut chunk).or(timeout(left)).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by the server"));
            }
            self.replies.push(&chunk[..n]);
        }
    }

    pub(super) async fn command(&mut self, line: &str, limit: Duration) -> io::Result<Response> {
        self.send(format!("{line}\r\n").as_bytes(), limit).await?;
        self.reply(limit).await
    }

    /// EHLO, or HELO when the server does not know EHLO.
    pub(super) async fn ehlo(&mut self, hostname: &str, limit: Duration) -> Result<Response, Abort> {
        let r = self.command(&format!("EHLO {hostname}"), limit).await.map_err(next)?;
        if r.code == 250 {
            return Ok(r);
        }
        let r = self.command(&format!("HELO {hostname}"), limit).await.map_err(next)?;
        if r.code == 250 {
            // No extensions: keep only the first line.
            return Ok(Response { code: 250, lines: r.lines.into_iter().take(1).collect() });
        }
        Err(self.refused("EHLO/HELO refused", &r))
    }

    /// The TLS handshake after the server's 220 to STARTTLS. Anything the
    /// server sent after its 220 came before the handshake, in the clear:
    /// dropped unread.
    pub(super) async fn start_tls(
        &mut self,
        config: &Arc<ClientConfig>,
        name: ServerName<'static>,
        limit: Duration,
    ) -> Result<(), Abort> {
        self.replies.clear();
        let Stream::Plain(tcp) = std::mem::replace(&mut self.io, Stream::Gone) else {
            return Err(miss("internal: STARTTLS on a TLS connection"));
        };
        let tls = TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .or(timeout(limit))
            .await
            .map_err(|e| miss(format!("{TLS_FAILED}: {e}")))?;
        self.io = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// AUTH PLAIN, or LOGIN when only that is offered.
    pub(super) async fn login(
        &mut self,
        ehlo: &Response,
        user: &str,
        password: &str,
        limit: Duration,
    ) -> Result<(), Abort> {
        let mechanisms = ehlo.params("AUTH").unwrap_or_default();
        let r = if mechanisms.iter().any(|m| m == "PLAIN") {
            let token = base64_encode(format!("\0{user}\0{password}").as_bytes());
            self.command(&format!("AUTH PLAIN {token}"), limit).await.map_err(next)?
        } else if mechanisms.iter().any(|m| m == "LOGIN") {
            let r = self.command("AUTH LOGIN", limit).await.map_err(next)?;
            let r = if r.code == 334 {
                self.command(&base64_encode(user.as_bytes()), limit).await.map_err(next)?
            } else {
                r
            };
            if r.code == 334 {
                self.command(&base64_encode(password.as_bytes()), limit).await.map_err(next)?
            } else {
                r
            }
        } else {
            return Err(miss("the smarthost offers neither AUTH PLAIN nor AUTH LOGIN"));
        };
        if r.code == 235 {
            Ok(())
        } else {
            // A refused login is our configuration's fault: keep the mail queued.
            let e = DeliveryError::from_reply(&r, &self.peer).transient();
            Err(Abort::All(e.context("smarthost login failed")))
        }
    }

    /// MAIL, RCPT for each recipient, DATA and the message; pipelined when
    /// the server offers it.
    pub(super) async fn transaction(
        &mut self,
        ehlo: &Response,
        msg: &Outgoing<'_>,
        limit: Duration,
        data_limit: Duration,
    ) -> Result<Vec<RecipientResult>, Abort> {
        if let Some(max) = ehlo.params("SIZE").and_then(|p| p.first().and_then(|v| v.parse::<u64>().ok())) {
            if max > 0 && msg.size > max {
                return Err(Abort::All(DeliveryError::new(
                    EnhancedCode::new(5, 3, 4),
                    format!("552 5.3.4 message size {} exceeds the {max} bytes the server accepts", msg.size),
                )));
            }
        }
        let utf8 = msg.sender.is_some_and(|a| !a.to_string().is_ascii())
            || msg.recipients.iter().any(|a| !a.to_string().is_ascii());
        if utf8 && !ehlo.has("SMTPUTF8") {
            return Err(Abort::All(DeliveryError::new(
                EnhancedCode::new(5, 6, 7),
                "553 5.6.7 the receiving server does not support SMTPUTF8, which these addresses need",
            )));
        }
        let mut mail = format!("MAIL FROM:<{}>", msg.sender.map(ToString::to_string).unwrap_or_default());
        if ehlo.has("SIZE") {
            mail.push_str(&format!(" SIZE={}", msg.size));
        }
        if ehlo.has("8BITMIME") {
            mail.push_str(" BODY=8BITMIME");
        }
        if utf8 {
            mail.push_str(" SMTPUTF8");
        }
        let rcpts: Vec<String> = msg.recipients.iter().map(|a| format!("RCPT TO:<{a}>")).collect();
        let (mail_reply, rcpt_replies, data_reply) = if ehlo.has("PIPELINING") {
            let mut batch = format!("{mail}\r\n");
            for r in &rcpts {
                batch.push_str(r);
                batch.push_str("\r\n");
            }
            batch.push_str("DATA\r\n");
            self.send(batch.as_bytes(), limit).await.map_err(next)?;
            let m = self.reply(limit).await.map_err(next)?;
            let mut rs = Vec::new();
            for _ in &rcpts {
                rs.push(self.reply(limit).await.map_err(next)?);
            }
            let d = self.reply(limit).await.map_err(next)?;
            (m, rs, Some(d))
        } else {
            let m = self.command(&mail, limit).await.map_err(next)?;
            let mut rs = Vec::new();
            if m.code == 250 {
                for r in &rcpts {
                    rs.push(self.command(r, limit).await.map_err(next)?);
                }
            }
            (m, rs, None)
        };
        if mail_reply.code != 250 {
            self.abandon(data_reply.as_ref(), limit, data_limit).await;
            let e = DeliveryError::from_reply(&mail_reply, &self.peer);
            return Err(Abort::All(if mail_reply.class() == 2 {
                e.context("unexpected reply to MAIL")
            } else {
                e
            }));
        }
        let mut results: Vec<RecipientResult> = rcpt_replies.iter().map(|r| self.outcome(r)).collect();
        if !results.iter().any(Result::is_ok) {
            self.abandon(data_reply.as_ref(), limit, data_limit).await;
            return Ok(results);
        }
        let data_reply = match data_reply {
            Some(d) => d,
            None => self.command("DATA", limit).await.map_err(next)?,
        };
        if data_reply.code != 354 {
            let e = DeliveryError::from_reply(&data_reply, &self.peer);
            return Ok(results.into_iter().map(|r| r.and(Err(e.clone()))).collect());
        }
        self.send_body(msg, data_limit).await.map_err(next)?;
        let end = self.reply(data_limit).await.map_err(next)?;
        let outcome = self.outcome(&end);
        for r in &mut results {
            if r.is_ok() {
                *r = outcome.clone();
            }
        }
        Ok(results)
    }

    /// Ends a transaction that will send no message: closes a DATA the server
    /// opened anyway (with no good recipient, it should not have), then RSET.
    /// A connection that does not come back to a clean state is not reused.
    async fn abandon(&mut self, data_reply: Option<&Response>, limit: Duration, data_limit: Duration) {
        if data_reply.is_some_and(|d| d.code == 354) {
            // An empty message: the final dot alone.
            let _ = self.send(&DotStuffer::stuff(b""), limit).await;
            let _ = self.reply(data_limit).await;
        }
        match self.command("RSET", limit).await {
            Ok(r) if r.code == 250 => {}
            _ => self.broken = true,
        }
    }

    /// Sends the stored message dot-stuffed, then the final dot.
    async fn send_body(&mut self, msg: &Outgoing<'_>, limit: Duration) -> io::Result<()> {
        let mut stuffer = DotStuffer::default();
        let mut out = Vec::with_capacity(64 * 1024);
        let mut n = 0;
        while let Some(piece) = (msg.piece)(n)? {
            n += 1;
            stuffer.push(&piece, &mut out);
            // Small pieces (the first is only the Received line) go out with
            // the next one, or with the final dot.
            if out.len() >= 32 * 1024 {
                self.io.write_all(&out).or(timeout(limit)).await?;
                out.clear();
            }
        }
        let sent = stuffer.pushed();
        if sent != msg.size || n != msg.pieces {
            // The message changed under us (deleted meanwhile): never end it
            // with a dot; drop the connection instead.
            self.broken = true;
            return Err(io::Error::other(format!(
                "the stored message is not whole: {n} of {} pieces, {sent} of {} bytes",
                msg.pieces, msg.size
            )));
        }
        stuffer.finish(&mut out);
        self.send(&out, limit).await
    }
}
