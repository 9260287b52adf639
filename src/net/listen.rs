//! Listening sockets and the accept loop.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use async_net::{TcpListener, TcpStream};
use smol::Timer;
use smol::future::FutureExt as _;

use super::Stop;

/// Opens a listening socket. IPv6 sockets are IPv6-only, so `0.0.0.0:25` and
/// `[::]:25` can both be listed; the backlog is long enough that a burst of
/// clients is queued by the kernel rather than dropped.
///
/// # Errors
/// When the address cannot be bound.
pub fn open(addr: SocketAddr) -> io::Result<TcpListener> {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let family = if addr.is_ipv6() { AddressFamily::INET6 } else { AddressFamily::INET };
    let fd = rustix::net::socket_with(family, SocketType::STREAM, rustix::net::SocketFlags::CLOEXEC, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    if addr.is_ipv6() {
        sockopt::set_ipv6_v6only(&fd, true)?;
    }
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, 1024)?;
    TcpListener::try_from(std::net::TcpListener::from(fd))
}

/// Accepts connections on `listener` until `stop`, handing each to `each`
/// (which spawns its task). Replies are written whole, so the sockets do not
/// wait for the client's ACK of the last one before sending the next
/// (`TCP_NODELAY`). A failed accept (out of file descriptors, say) waits a
/// little rather than spin.
pub async fn accept_loop(listener: TcpListener, stop: &Stop, mut each: impl FnMut(TcpStream, SocketAddr)) {
    loop {
        let accepted = listener.accept().or(async {
            stop.wait().await;
            Err(io::Error::other("stopping"))
        });
        let accepted = accepted.await;
        if stop.is_stopped() {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                each(stream, peer);
            }
            Err(e) => {
                log::warn!("accept failed: {e}");
                Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Runs one client's session as a task of its own on `ex`: a bug that
/// panics in it ends that session, logged, never an executor thread.
pub fn spawn_session(
    ex: &smol::Executor<'static>,
    protocol: &'static str,
    peer: SocketAddr,
    session: impl std::future::Future<Output = ()> + Send + 'static,
) {
    ex.spawn(async move {
        let session = std::panic::AssertUnwindSafe(session);
        if smol::future::FutureExt::catch_unwind(session).await.is_err() {
            log::error!("{protocol} session from {peer} ended by an internal error");
        }
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_handed_over_until_the_stop() {
        smol::block_on(async {
            let listener = open("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Stop::default();
            let (tx, rx) = smol::channel::unbounded();
            let serving = accept_loop(listener, &stop, |stream, peer| {
                let _ = tx.try_send((stream.nodelay().unwrap(), peer));
            });
            let client = async {
                let c = TcpStream::connect(addr).await.unwrap();
                let (nodelay, peer) = rx.recv().await.unwrap();
                assert!(nodelay);
                assert_eq!(peer, c.local_addr().unwrap());
                stop.trigger();
            };
            // The loop ends by itself once stopped.
            smol::future::zip(serving, client).await;
        });
    }
}
