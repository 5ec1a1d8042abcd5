//! A TCP relay on 127.0.0.1 in front of the test MariaDB, for injecting
//! network faults between the sink and the server.
//!
//! Point the sink at [`Relay::port`] instead of the server's port, then
//! switch the relay's mode while the test runs:
//!
//! - [`Relay::pass`]: bytes are forwarded both ways (the initial mode).
//! - [`Relay::hold`]: a network partition. Nothing is delivered in either
//!   direction, but every byte is kept; back in `pass` the kept bytes are
//!   delivered late and in order, the way TCP retransmits once a partition
//!   heals. A peer closing its side while held is delivered late too.
//! - [`Relay::drop_traffic`]: packets lost. Bytes in both directions are
//!   read and discarded (so is anything held); the sockets stay open, so
//!   neither side is told anything: reads simply never return.
//! - [`Relay::cut`]: every current connection is closed at once (both
//!   sockets shut down), as when a middlebox resets them.
//!
//! New connections are accepted in every mode: the relay connects to the
//! server at once and the new connection is subject to the current mode
//! (in `hold`, the server's greeting is held). Threads only, std only; all
//! threads stop when the relay is dropped.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the relay does with the bytes it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Hold,
    Drop,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        match v {
            0 => Mode::Pass,
            1 => Mode::Hold,
            _ => Mode::Drop,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Mode::Pass => 0,
            Mode::Hold => 1,
            Mode::Drop => 2,
        }
    }
}

/// How often an idle thread looks at the mode and the stop flag.
const TICK: Duration = Duration::from_millis(10);

struct Shared {
    mode: AtomicU8,
    stop: AtomicBool,
    next_id: AtomicU64,
    /// Both sockets of every open connection, by connection id, for `cut`.
    conns: Mutex<Vec<(u64, TcpStream, TcpStream)>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    accepted: AtomicU64,
}

impl Shared {
    fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::SeqCst))
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn forget(&self, id: u64) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = conns.iter().position(|(i, _, _)| *i == id) {
            let (_, a, b) = conns.swap_remove(at);
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

/// A fault-injecting TCP relay; see the module documentation.
pub struct Relay {
    port: u16,
    upstream: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    /// Listens on an ephemeral port of 127.0.0.1 and relays every connection
    /// to `127.0.0.1:upstream_port`, in `pass` mode.
    pub fn start(upstream_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay: bind");
        listener
            .set_nonblocking(true)
            .expect("relay: non-blocking listener");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(Mode::Pass.as_u8()),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
        });
        let s = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name(format!("relay-{port}-accept"))
            .spawn(move || accept_loop(listener, upstream_port, s))
            .expect("relay: accept thread");
        Relay {
            port,
            upstream: upstream_port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The port to connect to instead of the server's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's port.
    pub fn upstream_port(&self) -> u16 {
        self.upstream
    }

    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// Forwards bytes both ways, first delivering whatever was held.
    pub fn pass(&self) {
        self.set(Mode::Pass);
    }

    /// A partition: keeps every byte, delivers none until [`Relay::pass`].
    pub fn hold(&self) {
        self.set(Mode::Hold);
    }

    /// Packet loss: discards every byte (and whatever was held) without
    /// closing anything.
    pub fn drop_traffic(&self) {
        self.set(Mode::Drop);
    }

    pub fn set(&self, mode: Mode) {
        self.shared.mode.store(mode.as_u8(), Ordering::SeqCst);
    }

    /// Closes every current connection (both of its sockets). New
    /// connections are accepted as before.
    pub fn cut(&self) {
        let conns: Vec<_> = self
            .shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for (_, a, b) in conns {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }

    /// Connections currently open through the relay.
    pub fn open_connections(&self) -> usize {
        self.shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        self.cut();
        let threads: Vec<_> = self
            .shared
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: u16, shared: Arc<Shared>) {
    while !shared.stopped() {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(TICK);
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("relay: accept failed: {e}");
                std::thread::sleep(TICK);
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let server = match TcpStream::connect(("127.0.0.1", upstream)) {
            Ok(s) => s,
            Err(e) => {
                // The server refused: so does the relay.
                eprintln!("relay: cannot reach 127.0.0.1:{upstream}: {e}");
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
        };
        if let Err(e) = start_connection(client, server, &shared) {
            eprintln!("relay: cannot set up a connection: {e}");
        }
    }
}

fn start_connection(
    client: TcpStream,
    server: TcpStream,
    shared: &Arc<Shared>,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    for s in [&client, &server] {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(TICK))?;
    }
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    shared
        .conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((id, client.try_clone()?, server.try_clone()?));
    let mut threads = shared.threads.lock().unwrap_or_else(|p| p.into_inner());
    // Joined handles of connections that ended are dropped as we go.
    threads.retain(|t| !t.is_finished());
    let done = Arc::new(AtomicU8::new(0));
    for (from, to, dir) in [
        (client.try_clone()?, server.try_clone()?, "up"),
        (server, client, "down"),
    ] {
        let (s, done) = (shared.clone(), done.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("relay-conn{id}-{dir}"))
                .spawn(move || {
                    pump(id, from, to, &s);
                    // The second direction to finish unregisters the
                    // connection (closing the relay's copies of its sockets).
                    if done.fetch_add(1, Ordering::SeqCst) == 1 {
                        s.forget(id);
                    }
                })?,
        );
    }
    Ok(())
}

/// Moves bytes from `from` to `to` according to the mode, until either side
/// closes, the connection is cut, or the relay stops.
fn pump(id: u64, mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut held: Vec<u8> = Vec::new();
    let mut eof = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if shared.stopped() {
            break;
        }
        match shared.mode() {
            Mode::Pass => {
                if !held.is_empty() {
                    if to.write_all(&held).is_err() {
                        break;
                    }
                    held.clear();
                }
                if eof {
                    // Delivered everything, then the peer's close.
                    let _ = to.shutdown(Shutdown::Write);
                    return;
                }
            }
            Mode::Drop => held.clear(),
            Mode::Hold => {}
        }
        if eof {
            // Nothing more to read; wait for the mode to deliver the close
            // (pass) or for the end of the relay.
            std::thread::sleep(TICK);
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => eof = true,
            Ok(n) => match shared.mode() {
                Mode::Pass => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Mode::Hold => held.extend_from_slice(&buf[..n]),
                Mode::Drop => {}
            },
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    // An error on either socket, a cut, or the relay stopping: the whole
    // connection goes.
    shared.forget(id);
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
