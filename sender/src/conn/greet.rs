//! The greeting: the sender's `Hello`, the challenge-response when the receiver asks for a
//! key, and the `Welcome` (with the receiver's proof when a key is used).
//!
//! It works on any connected stream, whoever opened it; it does not dial and exchanges
//! nothing about datasets.

use super::Connection;
use crate::{Config, Error, Result};
use log::debug;
use std::io::{BufReader, BufWriter};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use zfsync_protocol::{auth, FrameReader, FrameWriter, Message, Reason, VERSION};
use zfsync_text::quoted;

impl Connection {
    /// Greets (and authenticates to) the receiver on a connected, configured stream:
    /// whoever opened it, the sender speaks first.
    pub fn greet(stream: TcpStream, config: &Config) -> Result<Connection> {
        let fd = stream.as_raw_fd();
        let mut conn = Connection {
            watch: None,
            reader: FrameReader::new(BufReader::with_capacity(64 << 10, stream.try_clone()?)),
            writer: FrameWriter::new(BufWriter::with_capacity(64 << 10, stream)),
            fd,
            timeout: config.timeout,
            root_announced: false,
            features: 0,
            sent: 0,
            confirmed: 0,
        };
        let client = config
            .key
            .as_ref()
            .map(|k| k.name.clone())
            .unwrap_or_default();
        conn.writer.send(&Message::Hello {
            version: VERSION,
            agent: format!("zfsync-send {}", env!("CARGO_PKG_VERSION")),
            dest: config.dest.clone(),
            client: client.clone(),
        })?;
        let mut client_nonce = Vec::new();
        let mut server_nonce = Vec::new();
        let mut msg = conn.read()?;
        if let Message::Challenge { nonce } = msg {
            let Some(key) = &config.key else {
                return Err(Error::Auth(
                    "the receiver requires a key: give --key-file".into(),
                ));
            };
            client_nonce = auth::nonce()?.to_vec();
            let mac = auth::client_proof(&key.secret, &nonce, &client_nonce, &client, &config.dest);
            server_nonce = nonce;
            conn.writer.send(&Message::Proof {
                nonce: client_nonce.clone(),
                mac,
            })?;
            msg = conn.read()?;
        }
        match msg {
            Message::Welcome {
                version,
                agent,
                proof,
                features,
            } if version == VERSION => {
                conn.features = features;
                if let Some(key) = &config.key {
                    // Mutual: a receiver that cannot prove the key gets no data.
                    if server_nonce.is_empty() {
                        return Err(Error::Auth(
                            "the receiver did not ask for a key (started without --key-file?): refusing to send to an unauthenticated receiver".into(),
                        ));
                    }
                    if !auth::verify_server(
                        &key.secret,
                        &server_nonce,
                        &client_nonce,
                        &client,
                        &proof,
                    ) {
                        return Err(Error::Auth("the receiver failed to prove the key".into()));
                    }
                }
                debug!(
                    "connected addr={} peer_agent={}",
                    quoted(&config.address),
                    quoted(&agent)
                );
                Ok(conn)
            }
            Message::Welcome { version, .. } => Err(Error::Peer {
                reason: Reason::VersionMismatch,
                text: format!("receiver speaks protocol version {version}, this sender {VERSION}"),
            }),
            other => Err(Error::Violation(format!(
                "expected welcome, got {}",
                other.name()
            ))),
        }
    }
}
