//! Authentication: challenge-response over a shared key, and the key file.
//!
//! The key never crosses the wire. The receiver sends a fresh random nonce; the sender
//! answers with its own nonce and `HMAC-SHA256(key, "zfsync-v1 client" | server nonce |
//! client nonce | client name | dest)`; the receiver checks it (in constant time) and
//! proves itself back with `HMAC-SHA256(key, "zfsync-v1 server" | client nonce | server
//! nonce | client name)`. A captured exchange is useless later: the next connection has
//! another server nonce. The MACs are RustCrypto's, nothing here is hand-made crypto.
//!
//! # Key file
//!
//! One key a line: `NAME SECRET [SUBTREE]`, fields separated by white space; blank lines
//! and lines starting with `#` are ignored. NAME is the client's name (1-64 of `a-z 0-9 .
//! _ -`), SECRET at least 16 characters, SUBTREE (receiver only) the path under TARGET that
//! this client is confined to. A sender uses the first key of its file.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Read;
use zfsync_text::IoWords;

pub const NONCE_LEN: usize = 32;
pub const MAC_LEN: usize = 32;
/// Shortest secret accepted: shorter ones are guessable.
pub const MIN_SECRET: usize = 16;
/// Random bytes in a secret made by [`new_secret`] (written as twice as many hex digits).
pub const NEW_SECRET_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// One entry of a key file.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub secret: Vec<u8>,
    /// Where this client's datasets are confined, relative to TARGET ("" = all of it).
    pub subtree: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret, not even in a debug log.
        write!(
            f,
            "Key {{ name: {:?}, subtree: {:?} }}",
            self.name, self.subtree
        )
    }
}

/// Checks a client name (it also appears in logs and hold tags).
pub fn check_client_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("client name {name:?}: wants 1-64 of a-z 0-9 . _ -"))
    }
}

/// Parses a key file's text.
pub fn parse_keys(text: &str) -> Result<Vec<Key>, String> {
    let mut keys: Vec<Key> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let (name, secret, subtree) = match f.as_slice() {
            [n, s] => (*n, *s, ""),
            [n, s, t] => (*n, *s, t.trim_matches('/')),
            _ => return Err(format!("line {}: expected NAME SECRET [SUBTREE]", i + 1)),
        };
        check_client_name(name).map_err(|e| format!("line {}: {e}", i + 1))?;
        if secret.len() < MIN_SECRET {
            return Err(format!(
                "line {}: secret shorter than {MIN_SECRET} characters (make one with zfsync-recv --gen-key NAME)",
                i + 1
            ));
        }
        if keys.iter().any(|k| k.name == name) {
            return Err(format!("line {}: client {name} appears twice", i + 1));
        }
        keys.push(Key {
            name: name.into(),
            secret: secret.as_bytes().to_vec(),
            subtree: subtree.into(),
        });
    }
    if keys.is_empty() {
        return Err("no key in the file".into());
    }
    Ok(keys)
}

/// Reads and parses a key file, refusing one that others can read.
pub fn read_key_file(path: &std::path::Path) -> Result<Vec<Key>, String> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |e: std::io::Error| format!("key file {}: {}", path.display(), IoWords(&e));
    let meta = std::fs::metadata(path).map_err(failed)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "key file {} is readable by others: chmod 600 it",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(failed)?;
    parse_keys(&text).map_err(|e| format!("key file {}: {e}", path.display()))
}

/// A new secret for a key file: 32 random bytes from the kernel, as 64 hex digits (a key
/// file's SECRET is any run of at least [`MIN_SECRET`] characters without white space).
pub fn new_secret() -> std::io::Result<String> {
    let mut bytes = [0u8; NEW_SECRET_BYTES];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A fresh random nonce from the kernel.
pub fn nonce() -> std::io::Result<[u8; NONCE_LEN]> {
    let mut n = [0u8; NONCE_LEN];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut n)?;
    Ok(n)
}

fn mac(secret: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    for p in parts {
        // Length-prefix each part so that no two different inputs concatenate alike.
        m.update(&(p.len() as u32).to_be_bytes());
        m.update(p);
    }
    m
}

fn client_mac(
    secret: &[u8],
    server_nonce: &[u8],
    client_nonce: &[u8],
    client: &str,
    dest: &str,
) -> HmacSha256 {
    mac(
        secret,
        &[
            b"zfsync-v1 client",
            server_nonce,
            client_nonce,
            client.as_bytes(),
            dest.as_bytes(),
        ],
    )
}

fn server_mac(secret: &[u8], server_nonce: &[u8], client_nonce: &[u8], client: &str) -> HmacSha256 {
    mac(
        secret,
        &[
            b"zfsync-v1 server",
            client_nonce,
            server_nonce,
            client.as_bytes(),
        ],
    )
}

/// The sender's answer to a challenge.
pub fn client_proof(
    secret: &[u8],
    server_nonce: &[u8],
    client_nonce: &[u8],
    client: &str,
    dest: &str,
) -> Vec<u8> {
    client_mac(secret, server_nonce, client_nonce, client, dest)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// The receiver's proof that it knows the key too.
pub fn server_proof(
    secret: &[u8],
    server_nonce: &[u8],
    client_nonce: &[u8],
    client: &str,
) -> Vec<u8> {
    server_mac(secret, server_nonce, client_nonce, client)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// Checks a sender's proof in constant time.
pub fn verify_client(
    secret: &[u8],
    server_nonce: &[u8],
    client_nonce: &[u8],
    client: &str,
    dest: &str,
    proof: &[u8],
) -> bool {
    client_mac(secret, server_nonce, client_nonce, client, dest)
        .verify_slice(proof)
        .is_ok()
}

/// Checks a receiver's proof in constant time.
pub fn verify_server(
    secret: &[u8],
    server_nonce: &[u8],
    client_nonce: &[u8],
    client: &str,
    proof: &[u8],
) -> bool {
    server_mac(secret, server_nonce, client_nonce, client)
        .verify_slice(proof)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &[u8] = b"0123456789abcdef-secret";

    #[test]
    fn proof_verifies_only_with_same_inputs() {
        let (sn, cn) = ([1u8; 32], [2u8; 32]);
        let p = client_proof(S, &sn, &cn, "alice", "a");
        assert!(verify_client(S, &sn, &cn, "alice", "a", &p));
        assert!(!verify_client(
            b"another-secret-0000",
            &sn,
            &cn,
            "alice",
            "a",
            &p
        ));
        assert!(
            !verify_client(S, &[3u8; 32], &cn, "alice", "a", &p),
            "replay under a new server nonce"
        );
        assert!(!verify_client(S, &sn, &cn, "bob", "a", &p));
        assert!(!verify_client(S, &sn, &cn, "alice", "b", &p));
        assert!(!verify_client(S, &sn, &cn, "alice", "a", &p[..31]));
    }

    #[test]
    fn server_and_client_proofs_differ() {
        let (sn, cn) = ([1u8; 32], [2u8; 32]);
        let c = client_proof(S, &sn, &cn, "x", "");
        assert!(
            !verify_server(S, &sn, &cn, "x", &c),
            "a client proof must not pass as the server's"
        );
        assert!(verify_server(
            S,
            &sn,
            &cn,
            "x",
            &server_proof(S, &sn, &cn, "x")
        ));
    }

    #[test]
    fn key_file() {
        let keys = parse_keys(
            "# comment\n\nalice 0123456789abcdefXYZ clients/alice\nbob 0123456789abcdef\n",
        )
        .unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].subtree, "clients/alice");
        assert_eq!(keys[1].subtree, "");
        assert!(parse_keys("alice short").unwrap_err().contains("shorter"));
        assert!(parse_keys("Alice 0123456789abcdef").is_err());
        assert!(parse_keys("a 0123456789abcdef\na 0123456789abcdef")
            .unwrap_err()
            .contains("twice"));
        assert!(parse_keys("# nothing\n").is_err());
        assert!(
            !format!("{:?}", keys[0]).contains("0123"),
            "Debug must not show the secret"
        );
    }

    #[test]
    fn new_secrets_are_random_hex_that_key_files_take() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 2 * NEW_SECRET_BYTES);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        let keys = parse_keys(&format!("bob {a}\n")).unwrap();
        assert_eq!(keys[0].secret, a.as_bytes());
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce().unwrap(), nonce().unwrap());
    }
}
