//! A scripted SMTP server on 127.0.0.1 for the tests: answers RCPT or the
//! final dot as the test says, records what it received, and can hang to simulate a dead peer.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How the server behaves in the `n`-th mail transaction (0-based, counted
/// across connections: a client may reuse a connection), or, for
/// [`Behaviour::Silent`], in the `n`-th connection.
pub type Script = dyn Fn(usize) -> Behaviour + Send + Sync;

#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Reply to every RCPT with this line, e.g. "250 2.1.5 ok" or "451 4.3.0 later".
    Rcpt(&'static str),
    /// Accept the connection and say nothing (chosen by connection number).
    Silent,
    /// Take the whole message, then never answer the final dot.
    HangAfterData,
    /// Accept every RCPT, take the whole message, and answer the final dot
    /// with this line (or lines), e.g. "554 5.7.1 rejected".
    Data(&'static str),
}

/// A message the server accepted.
#[derive(Clone, Debug)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

pub struct FakeMx {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    /// Connections that took a whole message and are hanging before the reply.
    pub hung: Arc<AtomicUsize>,
    pub received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl FakeMx {
    pub fn start(script: impl Fn(usize) -> Behaviour + Send + Sync + 'static) -> FakeMx {
        FakeMx::start_on("127.0.0.1:0", script)
    }

    pub fn start_on(addr: &str, script: impl Fn(usize) -> Behaviour + Send + Sync + 'static) -> FakeMx {
        let listener = TcpListener::bind(addr).expect("bind fake mx");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let hung = Arc::new(AtomicUsize::new(0));
        let transactions = Arc::new(AtomicUsize::new(0));
        let (c, r, s, h) =
            (Arc::clone(&connections), Arc::clone(&received), Arc::clone(&stop), Arc::clone(&hung));
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let n = c.fetch_add(1, Ordering::SeqCst);
                        let silent = matches!(script(n), Behaviour::Silent);
                        let (r, s, h) = (Arc::clone(&r), Arc::clone(&s), Arc::clone(&h));
                        let (script, t) = (Arc::clone(&script), Arc::clone(&transactions));
                        thread::spawn(move || {
                            let _ = serve(stream, silent, &*script, &t, &r, &s, &h);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeMx { addr, connections, hung, received, stop }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeMx {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    silent: bool,
    script: &Script,
    transactions: &AtomicUsize,
    received: &Mutex<Vec<Received>>,
    stop: &AtomicBool,
    hung: &AtomicUsize,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    if silent {
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(50));
        }
        return Ok(());
    }
    let mut input = BufReader::new(stream);
    out.write_all(b"220 fake.mx.test ESMTP\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut behaviour = Behaviour::Rcpt("250 2.1.5 ok");
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            out.write_all(b"250-fake.mx.test\r\n250-PIPELINING\r\n250-SIZE 10000000\r\n250-SMTPUTF8\r\n250 8BITMIME\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            behaviour = script(transactions.fetch_add(1, Ordering::SeqCst));
            from = cmd[10..].split_whitespace().next().unwrap_or("").to_string();
            to.clear();
            out.write_all(b"250 2.1.0 ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            match &behaviour {
                Behaviour::Rcpt(reply) => {
                    if reply.starts_with('2') {
                        to.push(cmd[8..].to_string());
                    }
                    out.write_all(format!("{reply}\r\n").as_bytes())?;
                }
                _ => {
                    to.push(cmd[8..].to_string());
                    out.write_all(b"250 2.1.5 ok\r\n")?;
                }
            }
        } else if upper == "DATA" {
            if to.is_empty() {
                out.write_all(b"554 5.5.1 no valid recipients\r\n")?;
                continue;
            }
            out.write_all(b"354 go ahead\r\n")?;
            let mut data = String::new();
            loop {
                line.clear();
                if input.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(&line);
            }
            if let Behaviour::HangAfterData = behaviour {
                hung.fetch_add(1, Ordering::SeqCst);
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(50));
                }
                return Ok(());
            }
            if let Behaviour::Data(reply) = behaviour {
                out.write_all(format!("{reply}\r\n").as_bytes())?;
                continue;
            }
            received.lock().unwrap().push(Received { from: from.clone(), to: to.clone(), data });
            out.write_all(b"250 2.0.0 queued\r\n")?;
        } else if upper == "QUIT" {
            out.write_all(b"221 2.0.0 bye\r\n")?;
            return Ok(());
        } else {
            out.write_all(b"250 2.0.0 ok\r\n")?;
        }
    }
}
