//! A TCP connection before or after its TLS handshake, as one type the SMTP
//! server and client can read and write whichever it is.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_net::TcpStream;
use smol::io::{AsyncRead, AsyncWrite};

/// The bytes of a connection: in the clear, or inside TLS (`T` is the
/// server's or the client's TLS stream).
pub enum Stream<T> {
    /// Before STARTTLS, or without TLS.
    Plain(TcpStream),
    /// After the handshake.
    Tls(Box<T>),
    /// Only while a handshake has taken the socket.
    Gone,
}

impl<T: AsyncRead + Unpin> AsyncRead for Stream<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stream<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// Fails with `TimedOut` after `d`; raced against I/O with `.or(...)`.
pub async fn timeout<T>(d: std::time::Duration) -> io::Result<T> {
    smol::Timer::after(d).await;
    Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
}
