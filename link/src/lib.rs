//! Where zfsync's connections come from: dialing a peer, and the socket options every
//! connection gets, whichever side dialed.
//!
//! Owns: resolving and connecting within a deadline, and `configure` (timeouts, no
//! Nagle, TCP keepalive). The link is where a later transport layer (encryption,
//! compression, rate limits) wraps the stream, and where pull mode swaps which side
//! dials: the greeting and the sessions that run on a connection do not care who opened
//! it.
//!
//! Does not own: frames or messages (`zfsync-protocol`), the greeting, authentication,
//! or anything about datasets; it runs no zfs and starts no threads.

use std::fmt;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;
use zfsync_text::IoWords;

/// Why a peer could not be dialed.
#[derive(Debug)]
pub enum DialError {
    /// The address did not resolve (unknown host, bad syntax).
    Resolve { address: String, error: io::Error },
    /// Every resolved address refused or timed out; the last error is kept.
    Connect {
        address: String,
        error: Option<io::Error>,
    },
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::Resolve { address, error } => {
                write!(f, "cannot resolve {address}: {}", IoWords(error))
            }
            DialError::Connect { address, error } => match error {
                Some(e) => write!(f, "cannot connect to {address}: {}", IoWords(e)),
                None => write!(f, "cannot connect to {address}: no address"),
            },
        }
    }
}

impl std::error::Error for DialError {}

/// Resolves `address` (`HOST:PORT`) and connects to the first of its addresses that
/// answers, each tried for at most `timeout`. The stream is configured (`configure`).
pub fn dial(address: &str, timeout: Duration) -> Result<TcpStream, DialError> {
    let addrs: Vec<_> = address
        .to_socket_addrs()
        .map_err(|error| DialError::Resolve {
            address: address.to_string(),
            error,
        })?
        .collect();
    let mut last = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                configure(&s, timeout).map_err(|e| DialError::Connect {
                    address: address.to_string(),
                    error: Some(e),
                })?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(DialError::Connect {
        address: address.to_string(),
        error: last,
    })
}

/// The options of every zfsync connection: `timeout` on each read and write, no Nagle
/// delay (messages are small and answered at once), and TCP keepalive, so a peer that
/// vanished without a word is noticed by the kernel even while the connection is idle.
pub fn configure(stream: &TcpStream, timeout: Duration) -> io::Result<()> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10));
    // Best effort: a kernel without these knobs still gets the timeouts.
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&ka);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn dial_configures_the_stream() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let s = dial(&addr, Duration::from_secs(3)).unwrap();
        assert_eq!(s.read_timeout().unwrap(), Some(Duration::from_secs(3)));
        assert!(s.nodelay().unwrap());
        assert!(socket2::SockRef::from(&s).keepalive().unwrap());
    }

    #[test]
    fn nothing_listening_is_a_connect_error() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let e = dial(&addr, Duration::from_secs(3)).unwrap_err();
        assert!(matches!(e, DialError::Connect { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("cannot connect to {addr}: ")),
            "{e}"
        );
    }

    #[test]
    fn an_unresolvable_name_is_a_resolve_error() {
        let e = dial("no-such-host.invalid:7611", Duration::from_secs(3)).unwrap_err();
        assert!(matches!(e, DialError::Resolve { .. }), "{e}");
    }
}
