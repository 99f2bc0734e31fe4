//! The greeting: the sender's hello, the protocol version check, authentication with the
//! client's key (when keys are configured), and the deadline the whole greeting must meet.
//! It decides where the sender's root lands under TARGET and answers welcome, or ends the
//! session. It must not look at datasets: nothing of the pool is touched before a sender is
//! admitted.

use crate::session::Session;
use crate::tree::join_rel;
use crate::{Error, Result};
use log::{info, warn};
use zfsync_protocol::{auth, Message, Reason, FEATURE_LISTED, VERSION};
use zfsync_text::quoted;
use zfsync_zfs::check_relative_path;

impl Session<'_> {
    /// Shuts the connection down unless the returned sender is dropped within the timeout.
    fn greeting_deadline(&self) -> Result<crossbeam_channel::Sender<()>> {
        let stream = self.writer.get_ref().get_ref().try_clone()?;
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let timeout = self.shared.config.timeout;
        let peer = self.peer;
        std::thread::spawn(move || {
            if rx.recv_timeout(timeout) == Err(crossbeam_channel::RecvTimeoutError::Timeout) {
                warn!(
                    "greeting not finished in time peer={}: closing",
                    quoted(peer)
                );
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        });
        Ok(tx)
    }

    /// Admits the sender (its root's landing place set) or ends the session with an error.
    pub(crate) fn greet(&mut self) -> Result<()> {
        // The whole greeting (and authentication) must finish within the timeout: a peer
        // that trickles a byte at a time must not hold a connection slot for ever.
        let watchdog = self.greeting_deadline()?;
        let greeted = self.admit();
        drop(watchdog);
        greeted
    }

    fn admit(&mut self) -> Result<()> {
        let (version, agent, dest, client) = match self.reader.read_message()? {
            Some(Message::Hello {
                version,
                agent,
                dest,
                client,
            }) => (version, agent, dest, client),
            Some(other) => return self.violation(&format!("expected hello, got {}", other.name())),
            None => return Err(Error::Violation("closed before hello".into())),
        };
        if version != VERSION {
            let text = format!(
                "receiver speaks protocol version {VERSION}, sender {version}: upgrade one side"
            );
            return self.refuse_session(Reason::VersionMismatch, text);
        }
        let (subtree, proof) = if self.shared.config.keys.is_empty() {
            (String::new(), Vec::new())
        } else {
            match self.authenticate(&client, &dest)? {
                Some(ok) => {
                    self.record.admitted(&client);
                    ok
                }
                None => {
                    warn!(
                        "authentication failed peer={} client={}",
                        quoted(self.peer),
                        quoted(&client)
                    );
                    return self.refuse_session(Reason::Denied, "authentication failed".into());
                }
            }
        };
        let root_rel = join_rel(&subtree, &dest);
        let root = match check_relative_path(&dest)
            .and_then(|_| self.shared.tree.target.join(&root_rel))
        {
            Ok(root) => root,
            Err(e) => {
                return self.refuse_session(
                    Reason::InvalidPath,
                    format!("destination path refused: {e}"),
                )
            }
        };
        info!(
            "session start peer={} agent={} client={} base={}",
            quoted(self.peer),
            quoted(&agent),
            quoted(&client),
            quoted(&root_rel)
        );
        self.root_rel = root_rel;
        self.root = root;
        self.writer.send(&Message::Welcome {
            version: VERSION,
            agent: format!("zfsync-recv {}", env!("CARGO_PKG_VERSION")),
            // Takes the dataset list that `--orphans-after` counts by, and only with it:
            // without, a list would cost the sender its sending and this side a listing
            // of the tree and a transaction each run, for nothing.
            features: match self.shared.config.orphans {
                Some(_) => FEATURE_LISTED,
                None => 0,
            },
            proof,
        })?;
        Ok(())
    }

    /// Sends a session-ending error and returns it as this session's error.
    fn refuse_session(&mut self, reason: Reason, text: String) -> Result<()> {
        self.writer.send(&Message::Error {
            reason,
            text: text.clone(),
        })?;
        Err(Error::Violation(text))
    }

    /// Challenge-response with the client's key. Returns its subtree and the receiver's
    /// proof, or `None` when it failed. An unknown client name is challenged like a known
    /// one, so that the answer does not tell which names exist.
    fn authenticate(&mut self, client: &str, dest: &str) -> Result<Option<(String, Vec<u8>)>> {
        let key = self.shared.config.keys.iter().find(|k| k.name == client);
        let server_nonce = auth::nonce()?.to_vec();
        self.writer.send(&Message::Challenge {
            nonce: server_nonce.clone(),
        })?;
        let (client_nonce, mac) = match self.reader.read_message()? {
            Some(Message::Proof { nonce, mac }) => (nonce, mac),
            Some(other) => return self.violation(&format!("expected proof, got {}", other.name())),
            None => return Err(Error::Violation("closed before proof".into())),
        };
        let Some(key) = key else { return Ok(None) };
        if !auth::verify_client(
            &key.secret,
            &server_nonce,
            &client_nonce,
            client,
            dest,
            &mac,
        ) {
            return Ok(None);
        }
        let proof = auth::server_proof(&key.secret, &server_nonce, &client_nonce, client);
        Ok(Some((key.subtree.clone(), proof)))
    }
}
