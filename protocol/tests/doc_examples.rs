//! The hex examples in `docs/PROTOCOL.md` are the encoder's exact output.
//!
//! Each example in the document is a fenced block right after a `<!-- frame: NAME -->`
//! marker; on each line, the bytes are the hex pairs before the `|`. This test encodes the
//! message NAME stands for and compares, so the document cannot drift from the code.

use zfsync_protocol::{
    DatasetKind, FrameWriter, Message, Outcome, Plan, Reason, SnapshotInfo, VERSION,
};

const GUID: u64 = 0x1c6d_2a6f_8e4b_3a21;
const SNAP: &str = "zfsync_2026-11-22T03:00:00Z_hour";

fn examples() -> Vec<(&'static str, Message)> {
    vec![
        (
            "hello",
            Message::Hello {
                version: VERSION,
                agent: "zfsync-send 0.1.0".into(),
                dest: String::new(),
                client: String::new(),
            },
        ),
        (
            "welcome",
            Message::Welcome {
                version: VERSION,
                agent: "zfsync-recv 0.1.0".into(),
                features: 0,
                proof: Vec::new(),
            },
        ),
        (
            "root",
            Message::Root {
                guids: vec![0x5a8e_13c2_07d4_e961],
            },
        ),
        (
            "offer",
            Message::Offer {
                path: "home/alice".into(),
                kind: DatasetKind::Filesystem,
                count: 1,
                dry_run: false,
            },
        ),
        (
            "snap",
            Message::Snap(SnapshotInfo {
                name: SNAP.into(),
                guid: GUID,
                createtxg: 4711,
            }),
        ),
        ("reply", Message::Reply(Plan::Full { buffered: false })),
        ("end", Message::End { bytes: 8504 }),
        (
            "result",
            Message::Result(Outcome::Done {
                bytes: 8504,
                newest: SNAP.into(),
                newest_guid: GUID,
            }),
        ),
        (
            "busy",
            Message::Error {
                reason: Reason::Busy,
                // The receiver's text for --max-connections 16 (receiver/src/lib.rs).
                text: "receiver busy: 16 connections already".into(),
            },
        ),
    ]
}

/// The examples in the document: (name, bytes).
fn documented() -> Vec<(String, Vec<u8>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- frame:")
            .and_then(|r| r.strip_suffix("-->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "{name}: no code block after the marker"
        );
        let mut bytes = Vec::new();
        for l in lines.by_ref().take_while(|l| !l.starts_with("```")) {
            let hex = l.split('|').next().unwrap_or_default();
            for pair in hex.split_whitespace() {
                let b = u8::from_str_radix(pair, 16)
                    .unwrap_or_else(|_| panic!("{name}: {pair:?} is not a hex byte in {l:?}"));
                bytes.push(b);
            }
        }
        out.push((name.trim().to_string(), bytes));
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|c| {
            c.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn documented_frames_are_what_the_encoder_writes() {
    let doc = documented();
    let examples = examples();
    assert_eq!(
        doc.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        examples.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "the document's examples and this test's list differ"
    );
    for ((name, bytes), (_, msg)) in doc.iter().zip(&examples) {
        let mut w = FrameWriter::new(Vec::new());
        w.send(msg).unwrap();
        let want = w.get_ref();
        assert!(
            bytes == want,
            "docs/PROTOCOL.md example {name:?} is wrong; the encoder writes:\n{}",
            hex(want)
        );
    }
}

#[test]
fn documented_reason_codes_match() {
    // The table in the document: code, name, retryable.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let mut seen = 0;
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | code | reason | retryable | when |
        let (Some(code), Some(name), Some(retry)) = (cells.get(1), cells.get(2), cells.get(3))
        else {
            continue;
        };
        let Ok(code) = code.parse::<u16>() else {
            continue;
        };
        if !matches!(*retry, "yes" | "no") {
            continue;
        }
        let reason = Reason::from_code(code)
            .unwrap_or_else(|| panic!("the document lists unknown reason code {code}"));
        assert_eq!(reason.as_str(), *name, "code {code}");
        assert_eq!(reason.is_retryable(), *retry == "yes", "{name} retryable");
        seen += 1;
    }
    let all = (0..=u16::MAX).filter_map(Reason::from_code).count();
    assert_eq!(seen, all, "the document's reason table is incomplete");
}
