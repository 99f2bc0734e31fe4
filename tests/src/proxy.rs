//! A TCP proxy for fault tests: forwards, cuts, stalls and records connections.
//!
//! Owns: `Proxy` (its accept thread and two pump threads per connection) and
//! `ProxyRecord`. Must not: change the bytes it forwards (a fault is a cut or a stall,
//! never a rewrite: tests that craft bad bytes speak the protocol themselves), or keep
//! threads or sockets alive after it is dropped.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

/// What a proxied connection carried, each direction as forwarded.
#[derive(Clone, Debug, Default)]
pub struct ProxyRecord {
    /// Client (sender) to upstream (receiver).
    pub to_upstream: Vec<u8>,
    /// Upstream to client.
    pub to_client: Vec<u8>,
}

struct ProxyShared {
    upstream: String,
    stop: std::sync::atomic::AtomicBool,
    /// Cut a connection once this many bytes went client -> upstream (u64::MAX: never).
    cut_after: AtomicU64,
    /// Stall a connection (forward nothing more, either way, but keep it open) once this
    /// many bytes went client -> upstream (u64::MAX: never).
    stall_after: AtomicU64,
    record: std::sync::atomic::AtomicBool,
    cuts: AtomicU64,
    /// Every accepted connection: its two sockets (to shut them on drop) and its record.
    conns: std::sync::Mutex<Vec<(Vec<std::net::TcpStream>, ProxyRecord)>>,
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` (a receiver), for fault tests. It
/// forwards both directions as they come. Once a number of bytes has gone upstream on a
/// connection it can cut it (shut and close both sockets: both peers see the connection
/// end or reset) or stall it (forward nothing more, either way, and keep both sockets
/// open: a network that silently drops everything, so only timeouts help). It can record
/// the bytes of each connection (to replay them). Stopped on drop.
pub struct Proxy {
    addr: String,
    shared: std::sync::Arc<ProxyShared>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (`HOST:PORT`) that neither cuts nor records.
    pub fn start(upstream: &str) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("proxy: bind: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("proxy: {e}"));
        let addr = listener.local_addr().expect("bound").to_string();
        let shared = std::sync::Arc::new(ProxyShared {
            upstream: upstream.to_string(),
            stop: std::sync::atomic::AtomicBool::new(false),
            cut_after: AtomicU64::new(u64::MAX),
            stall_after: AtomicU64::new(u64::MAX),
            record: std::sync::atomic::AtomicBool::new(false),
            cuts: AtomicU64::new(0),
            conns: std::sync::Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept = thread::spawn(move || proxy_accept(listener, s));
        Proxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// The proxy's address: the sender's HOST:PORT argument.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Cuts each later connection once `bytes` have gone upstream on it (`None`: never).
    pub fn cut_after(&self, bytes: Option<u64>) {
        self.shared
            .cut_after
            .store(bytes.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Stalls each later connection once `bytes` have gone upstream on it (`None`: never).
    pub fn stall_after(&self, bytes: Option<u64>) {
        self.shared
            .stall_after
            .store(bytes.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Records the bytes of each later connection (`records`).
    pub fn record(&self, on: bool) {
        self.shared.record.store(on, Ordering::SeqCst);
    }

    /// How many connections were cut so far.
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// What each connection carried so far, in the order they were accepted (empty
    /// records unless `record(true)` was set when they were accepted).
    pub fn records(&self) -> Vec<ProxyRecord> {
        let conns = self.shared.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.iter().map(|(_, r)| r.clone()).collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for (socks, _) in self
            .shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            for s in socks {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn proxy_accept(listener: std::net::TcpListener, shared: std::sync::Arc<ProxyShared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => {
                eprintln!("proxy: accept: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let _ = client.set_nonblocking(false);
        let upstream = match std::net::TcpStream::connect(&shared.upstream) {
            Ok(u) => u,
            Err(e) => {
                // Like a network without a route: the client sees its connection close.
                eprintln!("proxy: connect {}: {e}", shared.upstream);
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
            client.try_clone(),
            upstream.try_clone(),
            client.try_clone(),
            upstream.try_clone(),
        ) else {
            continue;
        };
        let index = {
            let mut conns = shared.conns.lock().unwrap_or_else(|p| p.into_inner());
            conns.push((vec![c3, u3], ProxyRecord::default()));
            conns.len() - 1
        };
        let record = shared.record.load(Ordering::SeqCst);
        let limits = PumpLimits {
            cut: shared.cut_after.load(Ordering::SeqCst),
            stall: shared.stall_after.load(Ordering::SeqCst),
            stalled: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        let (s, l) = (shared.clone(), limits.clone());
        thread::spawn(move || proxy_pump(client, upstream, l, record, true, index, s));
        let s = shared.clone();
        let l = PumpLimits {
            cut: u64::MAX,
            stall: u64::MAX,
            ..limits
        };
        thread::spawn(move || proxy_pump(u2, c2, l, record, false, index, s));
    }
}

/// When a connection's client -> upstream pump cuts or stalls it; the other pump follows
/// the shared `stalled` flag.
#[derive(Clone)]
struct PumpLimits {
    cut: u64,
    stall: u64,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Forwards `from` -> `to` until EOF, an error, or a limit: after `cut` bytes it shuts
/// both sockets and closes every handle on them; after `stall` bytes (or once the other
/// direction stalled) it forwards nothing more and holds the sockets open until the proxy
/// stops.
fn proxy_pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    limits: PumpLimits,
    record: bool,
    upstream_bound: bool,
    index: usize,
    shared: std::sync::Arc<ProxyShared>,
) {
    let mut buf = vec![0u8; 64 << 10];
    let mut forwarded: u64 = 0;
    let limit = limits.cut.min(limits.stall);
    loop {
        if limits.stalled.load(Ordering::SeqCst) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        if limits.stalled.load(Ordering::SeqCst) {
            break;
        }
        let n = (n as u64).min(limit - forwarded) as usize;
        if to.write_all(&buf[..n]).is_err() {
            let _ = from.shutdown(std::net::Shutdown::Both);
            return;
        }
        forwarded += n as u64;
        if record {
            let mut conns = shared.conns.lock().unwrap_or_else(|p| p.into_inner());
            let r = &mut conns[index].1;
            let v = if upstream_bound {
                &mut r.to_upstream
            } else {
                &mut r.to_client
            };
            v.extend_from_slice(&buf[..n]);
        }
        if forwarded >= limits.cut {
            shared.cuts.fetch_add(1, Ordering::SeqCst);
            let _ = from.shutdown(std::net::Shutdown::Both);
            let _ = to.shutdown(std::net::Shutdown::Both);
            // Close the proxy's other handles too, so that a peer still writing gets a
            // reset rather than a connection that silently takes no more.
            let mut conns = shared.conns.lock().unwrap_or_else(|p| p.into_inner());
            conns[index].0.clear();
            return;
        }
        if forwarded >= limits.stall {
            limits.stalled.store(true, Ordering::SeqCst);
            break;
        }
    }
    // Stalled: hold both sockets, read nothing, until the proxy stops.
    while !shared.stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(20));
    }
}
