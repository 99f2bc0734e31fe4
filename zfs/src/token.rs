//! Resume tokens: what an interrupted receive's token says it would send ([`TokenInfo`]).
//!
//! A token comes from the receiver, over the network: this module only reads what
//! `zfs send -nv -t` printed about it. Whether the token may be resumed (right snapshot,
//! right base, raw where it must be) is the sender's decision.

/// The contents of a resume token, as `zfs send -nv -t` prints them (an nvlist: one
/// `key = value` per line, numbers in hex; a flag such as `rawok` may print without a
/// value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenInfo {
    /// The snapshot the stream ends with, by full name.
    pub toname: Option<String>,
    pub toguid: Option<u64>,
    /// The base of an incremental stream.
    pub fromguid: Option<u64>,
    /// Bytes already received.
    pub bytes: Option<u64>,
    /// The stream would be sent raw (`-w`): encrypted datasets stay encrypted.
    pub rawok: bool,
}

impl TokenInfo {
    /// Reads the printed contents. A key that appears twice is refused: a string value in
    /// a crafted token could print as lines of its own, and only the real key must count.
    pub fn parse(text: &str) -> std::result::Result<TokenInfo, String> {
        let num = |v: &str| match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        };
        let mut t = TokenInfo::default();
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            let line = line.trim();
            let (key, value) = match line.split_once(" = ") {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (line, None),
            };
            let known = ["toname", "toguid", "fromguid", "bytes", "rawok"];
            if known.contains(&key) && !seen.insert(key) {
                return Err(format!("its contents name {key} twice"));
            }
            match (key, value) {
                ("toname", Some(v)) => t.toname = Some(v.to_string()),
                ("toguid", Some(v)) => t.toguid = num(v),
                ("fromguid", Some(v)) => t.fromguid = num(v),
                ("bytes", Some(v)) => t.bytes = num(v),
                ("rawok", None) => t.rawok = true,
                ("rawok", Some(v)) => t.rawok = v != "0",
                _ => {}
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_token_contents_are_read() {
        let text = "resume token contents:\nnvlist version: 0\n\tfromguid = 0x10\n\tobject = 0x2\n\toffset = 0x0\n\tbytes = 0x1f40\n\ttoguid = 0xc29ab1e6d5bcf52f\n\ttoname = tank/data@s2\n\tcompressok = 1\n\trawok = 1\nsend from tank/data@s1 estimated size is 1M\n";
        let t = TokenInfo::parse(text).unwrap();
        assert_eq!(t.toname.as_deref(), Some("tank/data@s2"));
        assert_eq!(t.toguid, Some(0xc29ab1e6d5bcf52f));
        assert_eq!(t.fromguid, Some(0x10));
        assert_eq!(t.bytes, Some(8000));
        assert!(t.rawok);
        // A flag printed without a value; no base; no rawok at all.
        assert!(TokenInfo::parse("\trawok\n").unwrap().rawok);
        let t = TokenInfo::parse("\ttoname = tank/data@s1\n\tembedok = 1\n").unwrap();
        assert!(!t.rawok);
        assert_eq!(t.fromguid, None);
        assert_eq!(t.toguid, None);
        // A second toname (a crafted string value printed as a line) is refused.
        let crafted = "\ttoname = other/ds@x\n\tnote = a\n\ttoname = tank/data@s2\n";
        assert!(TokenInfo::parse(crafted)
            .unwrap_err()
            .contains("toname twice"));
    }
}
