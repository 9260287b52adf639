//! One client connection as every protocol drives it: the socket before or
//! after TLS, the bytes read and not yet used, the replies not yet sent;
//! reads and writes that give up at a deadline or when the server stops;
//! the TLS handshake of an implicit-TLS port and the upgrade after STARTTLS
//! (or STLS), which drops whatever the client sent in the clear before it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_net::TcpStream;
use futures_rustls::TlsAcceptor;
use futures_rustls::server::TlsStream;
use rustls::ServerConfig;
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::Stop;
use crate::stream::{Stream, timeout};
use crate::tls::TlsInfo;

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection, before or after TLS.
pub type Io = Stream<TlsStream<TcpStream>>;

/// Bytes read from the client and not yet used.
#[derive(Debug, Default)]
pub struct InBuf {
    data: Vec<u8>,
    pos: usize,
}

impl InBuf {
    /// What is read and not yet used.
    pub fn unread(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    /// Marks the first `n` unread bytes used.
    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.data.len() {
            self.data.clear();
            self.pos = 0;
        }
    }

    /// Gives back memory past `len` bytes: an idle session stays small.
    pub fn shrink_to(&mut self, len: usize) {
        self.data.shrink_to(len);
    }
}

/// A client connection with its buffers.
pub struct Link {
    /// The socket.
    pub io: Io,
    /// What the client sent and the driver has not used yet.
    pub inbuf: InBuf,
    /// What is to be sent at the next [`Link::flush`].
    pub out: Vec<u8>,
}

impl Link {
    /// A connection with empty buffers.
    pub fn new(io: Io) -> Link {
        Link { io, inbuf: InBuf::default(), out: Vec::new() }
    }

    /// Reads up to `size` more bytes within `limit`.
    ///
    /// # Errors
    /// `TimedOut` past the limit, `UnexpectedEof` when the client closed.
    pub async fn read_more(&mut self, limit: Duration, size: usize) -> io::Result<()> {
        self.read_or_stop(limit, None, size).await.map(|_| ())
    }

    /// Reads up to `size` more bytes within `limit`; with `stop`, gives up
    /// early (and returns true) when the server is told to stop. Never leaves
    /// the input buffer half-changed, whichever comes first.
    ///
    /// # Errors
    /// As [`Link::read_more`].
    pub async fn read_or_stop(
        &mut self,
        limit: Duration,
        stop: Option<&Stop>,
        size: usize,
    ) -> io::Result<bool> {
        let inbuf = &mut self.inbuf;
        if inbuf.pos > 0 {
            inbuf.data.drain(..inbuf.pos);
            inbuf.pos = 0;
        }
        let start = inbuf.data.len();
        inbuf.data.resize(start + size, 0);
        let read = async { Some(self.io.read(&mut inbuf.data[start..]).or(timeout(limit)).await) };
        let stopped = async {
            match stop {
                Some(stop) => stop.wait().await,
                None => smol::future::pending::<()>().await,
            }
            None
        };
        let n = read.or(stopped).await;
        let got = match &n {
            Some(Ok(n)) => *n,
            _ => 0,
        };
        inbuf.data.truncate(start + got);
        match n {
            None => Ok(true),
            Some(Ok(0)) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "client closed the connection")),
            Some(Ok(_)) => Ok(false),
            Some(Err(e)) => Err(e),
        }
    }

    /// Sends what is in [`Link::out`], within `limit`.
    ///
    /// # Errors
    /// `TimedOut` past the limit, and the socket's errors.
    pub async fn flush(&mut self, limit: Duration) -> io::Result<()> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).or(timeout(limit)).await?;
            self.io.flush().or(timeout(limit)).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Runs the TLS handshake on a connection that was in the clear, after
    /// the protocol said yes to STARTTLS. Whatever the client sent after the
    /// command was sent in the clear and may be an attacker's: it is dropped
    /// unread.
    ///
    /// # Errors
    /// On a connection already in TLS, a failed handshake, or one that takes
    /// longer than [`HANDSHAKE_TIMEOUT`].
    pub async fn start_tls(&mut self, tls: Arc<ServerConfig>) -> io::Result<TlsInfo> {
        self.inbuf = InBuf::default();
        let Stream::Plain(tcp) = std::mem::replace(&mut self.io, Stream::Gone) else {
            return Err(io::Error::other("STARTTLS on a TLS connection"));
        };
        let (io, info) = handshake(tls, tcp).await?;
        self.io = io;
        Ok(info)
    }
}

/// The TLS handshake of a new connection on an implicit-TLS port, or after
/// STARTTLS, within [`HANDSHAKE_TIMEOUT`].
///
/// # Errors
/// A failed or timed-out handshake.
pub async fn handshake(tls: Arc<ServerConfig>, tcp: TcpStream) -> io::Result<(Io, TlsInfo)> {
    let s = TlsAcceptor::from(tls).accept(tcp).or(timeout(HANDSHAKE_TIMEOUT)).await?;
    let info = TlsInfo::of(s.get_ref().1);
    Ok((Stream::Tls(Box::new(s)), info))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair: our side as a link, and the client's socket.
    fn pair() -> (Link, TcpStream) {
        smol::block_on(async {
            let l = async_net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (ours, _) = l.accept().await.unwrap();
            (Link::new(Stream::Plain(ours)), client)
        })
    }

    #[test]
    fn reads_keep_what_is_unused_and_end_at_their_deadline_or_the_stop() {
        let (mut link, mut client) = pair();
        smol::block_on(async {
            client.write_all(b"first\r\nsec").await.unwrap();
            link.read_more(Duration::from_secs(5), 64).await.unwrap();
            while link.inbuf.unread().len() < 10 {
                link.read_more(Duration::from_secs(5), 64).await.unwrap();
            }
            link.inbuf.consume(7);
            assert_eq!(link.inbuf.unread(), b"sec");
            client.write_all(b"ond\r\n").await.unwrap();
            while link.inbuf.unread().len() < 8 {
                link.read_more(Duration::from_secs(5), 64).await.unwrap();
            }
            assert_eq!(link.inbuf.unread(), b"second\r\n");
            // Nothing more comes: the deadline ends the read, and the buffer
            // is as it was.
            let e = link.read_more(Duration::from_millis(30), 64).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut);
            assert_eq!(link.inbuf.unread(), b"second\r\n");
            let stop = Stop::default();
            stop.trigger();
            assert!(link.read_or_stop(Duration::from_secs(5), Some(&stop), 64).await.unwrap());
            assert_eq!(link.inbuf.unread(), b"second\r\n");
            link.out.extend_from_slice(b"250 ok\r\n");
            link.flush(Duration::from_secs(5)).await.unwrap();
            assert!(link.out.is_empty());
            let mut got = [0u8; 8];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"250 ok\r\n");
            drop(client);
            let e = link.read_more(Duration::from_secs(5), 64).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        });
    }

    #[test]
    fn starttls_drops_what_was_sent_in_the_clear_before_the_handshake() {
        let (mut link, mut client) = pair();
        let data = tempfile::tempdir().unwrap();
        let text = format!(
            "hostname = \"mx.test\"\ndata_dir = {:?}\n[domains.\"test.example\"]\n",
            data.path().display().to_string()
        );
        let config = crate::tls::load(&crate::config::Config::parse(&text, "test").unwrap()).unwrap().config;
        smol::block_on(async {
            client.write_all(b"STARTTLS\r\nRSET\r\n").await.unwrap();
            while link.inbuf.unread().len() < 16 {
                link.read_more(Duration::from_secs(5), 64).await.unwrap();
            }
            link.inbuf.consume(10);
            // The client never shakes hands: the bytes it piped in are gone
            // however the handshake ends.
            drop(client);
            assert!(link.start_tls(config).await.is_err());
            assert!(link.inbuf.unread().is_empty());
            assert!(matches!(link.io, Stream::Gone));
        });
    }
}
