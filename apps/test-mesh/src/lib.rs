//! The node that `cargo xtask test-mesh` drives, and the line protocol it speaks.
//!
//! `mesh-node` joins a mesh and is driven by JSON lines: one [`Command`] per line on its stdin,
//! one [`Report`] per line on its stdout (logs go to stderr). The protocol is documented in
//! docs/protocol.md ("mesh-node: the JSON-lines control protocol"); it is also how a program in
//! any language can run a p2pmesh node. `test-mesh` starts a signaling server and many
//! `mesh-node` processes and runs its scenarios through them.
//!
//! [`forge`] is the test instrument behind `mesh-node --forger`: it rewrites the node's own
//! outgoing frames so that they carry a bad signature, a spoofed origin or a spoofed sender.

pub mod forge;

use serde::{Deserialize, Serialize};
use sha1::Digest as _;

/// A line on `mesh-node`'s stdin. Every command may carry `req`, a number of the caller's that
/// the reports answering it carry back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Broadcast [`payload`]`(data, size)` on `topic`. Answered by [`Report::Broadcast`].
    Broadcast {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        topic: String,
        data: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<usize>,
    },
    /// Send [`payload`]`(data, size)` to the node `to` (hex id), linked or not. Answered by
    /// [`Report::Sent`]; a message never acknowledged later gives [`Report::DirectFailed`].
    Send {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        to: String,
        data: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<usize>,
    },
    /// Receive the broadcasts of `topic`. Answered by [`Report::Subscribed`].
    Subscribe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        topic: String,
    },
    /// Leave the mesh (links closed with a goodbye) and exit. Answered by [`Report::Left`].
    Leave {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
    },
    /// The links that are up. Answered by [`Report::Peers`].
    Peers {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
    },
    /// The node's counters. Answered by [`Report::Stats`].
    Stats {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
    },
    /// Only with `--forger`: send a forged message (see [`forge`]). `kind` says what is forged;
    /// `victim` is the node the forgery claims to come from (for `spoofed_origin` and
    /// `spoofed_sender`); `to` is the addressee of a `spoofed_sender` direct message; `tag` is
    /// put in the payload (`FORGE:<kind>:<tag>`) so that a delivery would be recognised.
    Forge {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        kind: forge::Kind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        victim: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        tag: String,
    },
}

/// A line on `mesh-node`'s stdout. `at_us` is the wall clock (microseconds since the Unix epoch)
/// when it happened, so that latencies between processes of one machine can be computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Report {
    /// Joined the signaling server's room as `id`; the first report.
    Joined { id: String, at_us: u64 },
    /// A link came up (its hello verified).
    PeerConnected { peer: String, at_us: u64 },
    /// An up link closed.
    PeerDisconnected {
        peer: String,
        reason: String,
        at_us: u64,
    },
    /// A link attempt did not open in time.
    PeerTimedOut { peer: String, at_us: u64 },
    /// A broadcast (`topic` set) or a direct message (`topic` null) arrived: its origin, size,
    /// SHA-1 (hex), its first bytes (lossy UTF-8, at most [`PREVIEW_BYTES`]) and link traversals.
    Message {
        from: String,
        topic: Option<String>,
        bytes: usize,
        sha1: String,
        preview: String,
        hops: u32,
        at_us: u64,
    },
    /// A broadcast was handed to the mesh (`at_us`: just before).
    Broadcast {
        req: Option<u64>,
        topic: String,
        bytes: usize,
        sha1: String,
        at_us: u64,
    },
    /// A direct message was handed to the mesh as `direct_id` (`at_us`: just before).
    Sent {
        req: Option<u64>,
        to: String,
        direct_id: String,
        bytes: usize,
        sha1: String,
        at_us: u64,
    },
    /// A direct message was never acknowledged.
    DirectFailed {
        direct_id: String,
        to: String,
        reason: String,
        at_us: u64,
    },
    /// Subscribed to `topic`.
    Subscribed { req: Option<u64>, topic: String },
    /// The links that are up.
    Peers {
        req: Option<u64>,
        peers: Vec<String>,
    },
    /// Counters (names as in `p2pmesh::Stats`, flattened with dots).
    Stats {
        req: Option<u64>,
        stats: serde_json::Map<String, serde_json::Value>,
    },
    /// A forged message was handed to the mesh.
    Forged {
        req: Option<u64>,
        kind: forge::Kind,
        at_us: u64,
    },
    /// The signaling server connection was lost (links stay up).
    ServerDisconnected {
        reason: String,
        reconnecting: bool,
        at_us: u64,
    },
    /// Joined the signaling server again.
    ServerReconnected { at_us: u64 },
    /// Reports were dropped because the node fell behind.
    Lagged { missed: u64, at_us: u64 },
    /// A command failed, or a line was not a command.
    Error { req: Option<u64>, message: String },
    /// Left the mesh; the process exits.
    Left { req: Option<u64>, at_us: u64 },
}

/// Most bytes of a message a [`Report::Message`] previews.
pub const PREVIEW_BYTES: usize = 80;

/// The bytes a `broadcast` or `send` command sends: `data`'s UTF-8, then, when `size` is larger,
/// filler (`a`..`z` repeated) up to `size` bytes.
pub fn payload(data: &str, size: Option<usize>) -> Vec<u8> {
    let mut bytes = data.as_bytes().to_vec();
    if let Some(size) = size {
        let start = bytes.len();
        bytes.extend((start..size).map(|i| b'a' + (i % 26) as u8));
    }
    bytes
}

/// SHA-1 of `bytes`, in hex (what [`Report::Message`] carries).
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(sha1::Sha1::digest(bytes))
}

/// The first [`PREVIEW_BYTES`] of `bytes` as lossy UTF-8.
pub fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(PREVIEW_BYTES)]).into_owned()
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_from_their_documented_lines() {
        let line = r#"{"cmd":"broadcast","req":7,"topic":"t","data":"hi","size":5}"#;
        let command: Command = serde_json::from_str(line).expect("parses");
        assert_eq!(
            command,
            Command::Broadcast {
                req: Some(7),
                topic: "t".into(),
                data: "hi".into(),
                size: Some(5)
            }
        );
        let line = r#"{"cmd":"send","to":"ab","data":"x"}"#;
        assert!(matches!(
            serde_json::from_str::<Command>(line),
            Ok(Command::Send {
                req: None,
                size: None,
                ..
            })
        ));
        assert!(serde_json::from_str::<Command>(r#"{"cmd":"peers"}"#).is_ok());
        assert!(serde_json::from_str::<Command>(r#"{"cmd":"fly"}"#).is_err());
        assert!(serde_json::from_str::<Command>(r#"{"cmd":"peers","typo":1}"#).is_err());
    }

    #[test]
    fn reports_are_tagged_lines() {
        let report = Report::PeerConnected {
            peer: "ab".into(),
            at_us: 3,
        };
        let line = serde_json::to_string(&report).expect("serialises");
        assert_eq!(line, r#"{"event":"peer_connected","peer":"ab","at_us":3}"#);
        assert_eq!(
            serde_json::from_str::<Report>(&line).expect("parses"),
            report
        );
    }

    #[test]
    fn payloads_are_padded_to_their_size_and_previewed() {
        assert_eq!(payload("ab", None), b"ab");
        assert_eq!(payload("ab", Some(5)), b"abcde");
        assert_eq!(payload("abc", Some(1)), b"abc");
        let big = payload("tag", Some(1 << 20));
        assert_eq!(big.len(), 1 << 20);
        assert_eq!(preview(&big).len(), PREVIEW_BYTES);
        assert_eq!(digest(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
