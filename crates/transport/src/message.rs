//! The signaling protocol's messages (JSON text over WebSocket), as documented in
//! `docs/protocol.md`.
//!
//! Every message is one JSON object with a `type` field. The names and fields of the
//! JavaScript p2pmesh server's messages are kept as they are; our additions are optional
//! fields and new types, so an old JavaScript client works against our server unchanged.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::PeerId;

/// The protocol version this crate speaks (sent in `challenge`, `join` and `joined`). Version 2
/// binds the join proof to the server's host ([`join_proof_message`]).
pub const PROTOCOL_VERSION: u32 = 2;

/// Length in bytes of the server's join nonce (sent as hex in `challenge`).
pub const NONCE_LEN: usize = 32;

/// Domain separator of the join proof: a signature over it can be used for nothing else.
pub const JOIN_PROOF_DOMAIN: &[u8] = b"p2pmesh/signaling/join/v2\0";

/// Longest `host` of a join.
pub const MAX_HOST_LEN: usize = 255;

/// The bytes a client signs to prove its id: [`JOIN_PROOF_DOMAIN`], the raw nonce bytes of the
/// server's `challenge`, then `host`: the server the client dialled, as the authority of its URL
/// (`host` or `host:port`, the port left out when it is the scheme's default, lowercase; see
/// [`normalize_host`]). The server refuses a proof for another host, so a proof cannot be relayed
/// by one server to another.
pub fn join_proof_message(nonce: &[u8; NONCE_LEN], host: &str) -> Vec<u8> {
    let mut msg = Vec::with_capacity(JOIN_PROOF_DOMAIN.len() + NONCE_LEN + host.len());
    msg.extend_from_slice(JOIN_PROOF_DOMAIN);
    msg.extend_from_slice(nonce);
    msg.extend_from_slice(host.as_bytes());
    msg
}

/// A host as it is signed and compared: lowercase, without a default port (`:80`, `:443`).
pub fn normalize_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    for default in [":80", ":443"] {
        if let Some(bare) = host.strip_suffix(default) {
            return bare.to_owned();
        }
    }
    host
}

/// The room a join without a `room` field enters (the JavaScript clients' only room).
pub const DEFAULT_ROOM: &str = "default";

/// Longest room name.
pub const MAX_ROOM_LEN: usize = 64;

/// Whether `room` is a valid room name: 1 to [`MAX_ROOM_LEN`] characters of
/// `[A-Za-z0-9._-]`.
pub fn is_valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= MAX_ROOM_LEN
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `join`: enter the signaling mesh.
///
/// The JavaScript client sends only `peerId`; a server that verifies ids also needs
/// `publicKey` and `signature` (see [`join_proof_message`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Join {
    /// The id to hold: SHA-1 of `publicKey` as 40 lowercase hex characters.
    pub peer_id: PeerId,
    /// The ed25519 public key, 32 bytes as hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The ed25519 signature of [`join_proof_message`] of the challenge nonce and `host`, 64
    /// bytes as hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The server the proof is for (see [`join_proof_message`]); required with a signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The room to enter; [`DEFAULT_ROOM`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The client's protocol version; absent for JavaScript clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u32>,
}

/// A message from a client to the signaling server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Enter the mesh (see [`Join`]).
    Join(Join),
    /// Leave the mesh; the connection stays open and may join again.
    #[serde(rename_all = "camelCase")]
    Leave {
        /// The leaver's id (JavaScript clients send it; the server uses the connection's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer_id: Option<PeerId>,
    },
    /// A WebRTC signal (simple-peer's `{type, sdp}` or `{candidate}`) for another peer.
    #[serde(rename_all = "camelCase")]
    Signal {
        /// The recipient.
        to: PeerId,
        /// Ignored by the server, which sets `from` itself; JavaScript clients send it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<PeerId>,
        /// The signal object, relayed as it is.
        signal: Value,
    },
    /// Several ICE candidates for one peer at once.
    #[serde(rename_all = "camelCase")]
    BatchedSignals {
        /// The recipient.
        to: PeerId,
        /// Ignored by the server.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<PeerId>,
        /// The signal objects.
        signals: Vec<Value>,
        /// When the batch was made (ms since the Unix epoch).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch_timestamp: Option<u64>,
    },
    /// A refusal of a connection request, with alternatives.
    #[serde(rename_all = "camelCase")]
    ConnectionRejected {
        /// The refused peer.
        to: PeerId,
        /// Why, e.g. `max_peers_reached`.
        reason: String,
        /// The refuser's peer limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_peers: Option<u32>,
        /// Peers to try instead (at most a few).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        alternative_peers: Vec<PeerId>,
    },
    /// A refusal of a signal, e.g. because of an initiator conflict.
    #[serde(rename_all = "camelCase")]
    SignalRejected {
        /// The peer whose signal is refused.
        to: PeerId,
        /// Why, e.g. `initiator_conflict`.
        reason: String,
        /// Which side should initiate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        correct_initiator: Option<PeerId>,
    },
    /// A Kademlia RPC request relayed through the server (before the peers have a link).
    #[serde(rename_all = "camelCase")]
    KademliaRpcRequest {
        /// The recipient.
        to: PeerId,
        /// The RPC, relayed as it is.
        rpc_message: Value,
    },
    /// A Kademlia RPC response relayed through the server.
    #[serde(rename_all = "camelCase")]
    KademliaRpcResponse {
        /// The recipient.
        to: PeerId,
        /// The RPC, relayed as it is.
        rpc_message: Value,
    },
    /// An application-level keepalive (browsers cannot send WebSocket pings); answered by `pong`.
    Ping {
        /// Echoed in the `pong`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ts: Option<u64>,
    },
}

impl ClientMessage {
    /// The recipient of a relayed message, if this is one.
    pub fn to(&self) -> Option<&PeerId> {
        match self {
            Self::Signal { to, .. }
            | Self::BatchedSignals { to, .. }
            | Self::ConnectionRejected { to, .. }
            | Self::SignalRejected { to, .. }
            | Self::KademliaRpcRequest { to, .. }
            | Self::KademliaRpcResponse { to, .. } => Some(to),
            Self::Join(_) | Self::Leave { .. } | Self::Ping { .. } => None,
        }
    }
}

/// One entry of `bootstrap_peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's id.
    pub id: PeerId,
}

/// A message from the signaling server to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Sent once on connect: the nonce to sign in `join`.
    #[serde(rename_all = "camelCase")]
    Challenge {
        /// [`NONCE_LEN`] random bytes as hex.
        nonce: String,
        /// The server's protocol version.
        protocol_version: u32,
        /// Whether the server also accepts unverified `join {peerId}` (compatibility mode).
        #[serde(default)]
        compat_unverified_ids: bool,
    },
    /// The join succeeded (sent to verified joins and to joins that carry `protocolVersion`).
    #[serde(rename_all = "camelCase")]
    Joined {
        /// The id now held by this connection.
        peer_id: PeerId,
        /// The room entered.
        room: String,
        /// The server's protocol version.
        protocol_version: u32,
    },
    /// Sent after a join: up to K XOR-closest peers in the room and a few random ones.
    BootstrapPeers {
        /// The introduced peers.
        peers: Vec<PeerInfo>,
    },
    /// A new peer to which this peer has been introduced (it may connect to it).
    #[serde(rename_all = "camelCase")]
    PeerJoined {
        /// The newcomer.
        peer_id: PeerId,
    },
    /// A peer this peer was introduced to (or by) has left.
    #[serde(rename_all = "camelCase")]
    PeerLeft {
        /// The peer that left.
        peer_id: PeerId,
    },
    /// A relayed signal.
    #[serde(rename_all = "camelCase")]
    Signal {
        /// The sender, set by the server.
        from: PeerId,
        /// The recipient as the sender wrote it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<PeerId>,
        /// The signal object.
        signal: Value,
    },
    /// Relayed batched ICE candidates.
    #[serde(rename_all = "camelCase")]
    BatchedSignals {
        /// The sender, set by the server.
        from: PeerId,
        /// The recipient as the sender wrote it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<PeerId>,
        /// The signal objects.
        signals: Vec<Value>,
        /// When the batch was made.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch_timestamp: Option<u64>,
    },
    /// A relayed connection refusal.
    #[serde(rename_all = "camelCase")]
    ConnectionRejected {
        /// The refuser, set by the server.
        from: PeerId,
        /// The recipient.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<PeerId>,
        /// Why.
        reason: String,
        /// The refuser's peer limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_peers: Option<u32>,
        /// Peers to try instead.
        #[serde(default)]
        alternative_peers: Vec<PeerId>,
    },
    /// A relayed signal refusal.
    #[serde(rename_all = "camelCase")]
    SignalRejected {
        /// The refuser, set by the server.
        from: PeerId,
        /// The recipient.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<PeerId>,
        /// Why.
        reason: String,
        /// Which side should initiate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        correct_initiator: Option<PeerId>,
    },
    /// A relayed Kademlia RPC request.
    #[serde(rename_all = "camelCase")]
    KademliaRpcRequest {
        /// The sender, set by the server.
        from: PeerId,
        /// The recipient.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<PeerId>,
        /// The RPC.
        rpc_message: Value,
    },
    /// A relayed Kademlia RPC response.
    #[serde(rename_all = "camelCase")]
    KademliaRpcResponse {
        /// The sender, set by the server.
        from: PeerId,
        /// The recipient.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<PeerId>,
        /// The RPC.
        rpc_message: Value,
    },
    /// The answer to a `ping`.
    Pong {
        /// The `ts` of the `ping`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ts: Option<u64>,
    },
    /// A refused input. The connection stays open unless a close frame follows.
    #[serde(rename_all = "camelCase")]
    Error {
        /// What was wrong, machine-readable (absent only from old servers).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<ErrorCode>,
        /// What was wrong, for people.
        message: String,
        /// The peer concerned, e.g. the unknown recipient of `unknown_peer`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer_id: Option<PeerId>,
    },
    /// The server is shutting down; a close frame (1001) follows.
    Shutdown {
        /// Why, for people.
        message: String,
    },
}

macro_rules! error_codes {
    ($($variant:ident => $name:literal : $doc:literal,)*) => {
        /// The machine-readable `code` of an `error` message.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $(#[doc = $doc] $variant,)*
            /// A code this version does not know (sent by a newer server).
            #[serde(other)]
            Unknown,
        }

        impl ErrorCode {
            /// Every code a server sends, in documentation order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it is written on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                    ErrorCode::Unknown => "unknown",
                }
            }
        }
    };
}

error_codes! {
    InvalidJson => "invalid_json": "The text is not JSON (or nests too deeply).",
    NotAnObject => "not_an_object": "The JSON is not an object.",
    MissingType => "missing_type": "The object has no `type`.",
    UnknownType => "unknown_type": "The `type` is not a message this server knows.",
    MissingField => "missing_field": "A required field is absent (the message names it).",
    InvalidField => "invalid_field": "A field has the wrong JSON type or an impossible value.",
    InvalidPeerId => "invalid_peer_id": "A peer id is not 40 lowercase hex characters (or, in compatibility mode, not 1 to 128 printable characters).",
    InvalidRoom => "invalid_room": "A room name is not 1 to 64 characters of `[A-Za-z0-9._-]`.",
    UnsupportedVersion => "unsupported_version": "The client's `protocolVersion` is newer than the server's.",
    ProofRequired => "proof_required": "A `join` without `publicKey` and `signature` on a server that verifies ids.",
    InvalidPublicKey => "invalid_public_key": "`publicKey` is not 32 bytes of hex encoding a valid ed25519 key.",
    InvalidSignature => "invalid_signature": "`signature` is not 64 bytes of hex, or does not verify over the challenge.",
    IdMismatch => "id_mismatch": "`peerId` is not SHA-1 of `publicKey`.",
    WrongHost => "wrong_host": "The join proof's `host` is not this server: a proof is valid only for the server it was made for.",
    IdTaken => "id_taken": "Another live connection holds this id; it keeps it.",
    AlreadyJoined => "already_joined": "This connection has already joined (send `leave` first).",
    NotJoined => "not_joined": "The message needs a joined connection.",
    NotYourId => "not_your_id": "`leave` named an id this connection does not hold.",
    SelfSignal => "self_signal": "A message addressed to its own sender.",
    UnknownPeer => "unknown_peer": "No peer with this id is in the sender's room (the message names it).",
    PeerBusy => "peer_busy": "The recipient's queue is full; the message was dropped.",
    RateLimited => "rate_limited": "Over the per-connection message rate; the message was dropped.",
    BinaryNotSupported => "binary_not_supported": "A binary WebSocket message; the protocol is JSON text.",
    MessageTooLarge => "message_too_large": "A message over the frame limit; close 1009 follows.",
    ServerFull => "server_full": "The server holds its maximum of clients; close 1013 follows.",
    JoinTimeout => "join_timeout": "No `join` within the join timeout; close 1008 follows.",
    Unavailable => "unavailable": "The server cannot admit a join now (it cannot reach its cluster's Redis, so it cannot check the id cluster-wide): join another server of the cluster, or again later.",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn javascript_messages_parse() {
        let join: ClientMessage =
            serde_json::from_value(json!({"type": "join", "peerId": "abc"})).expect("join");
        assert_eq!(
            join,
            ClientMessage::Join(Join {
                peer_id: PeerId::new("abc"),
                public_key: None,
                signature: None,
                host: None,
                room: None,
                protocol_version: None,
            })
        );
        let signal: ClientMessage = serde_json::from_value(json!({
            "type": "signal", "to": "b", "from": "a", "signal": {"type": "offer", "sdp": "v=0"}
        }))
        .expect("signal");
        assert_eq!(signal.to(), Some(&PeerId::new("b")));
    }

    #[test]
    fn server_messages_use_the_javascript_field_names() {
        let text = serde_json::to_string(&ServerMessage::PeerJoined {
            peer_id: PeerId::new("x"),
        })
        .expect("serialize");
        assert_eq!(text, r#"{"type":"peer_joined","peerId":"x"}"#);
        let text = serde_json::to_string(&ServerMessage::BootstrapPeers {
            peers: vec![PeerInfo {
                id: PeerId::new("y"),
            }],
        })
        .expect("serialize");
        assert_eq!(text, r#"{"type":"bootstrap_peers","peers":[{"id":"y"}]}"#);
        let old: ServerMessage =
            serde_json::from_str(r#"{"type":"error","message":"Peer X not found."}"#)
                .expect("old error");
        assert!(matches!(old, ServerMessage::Error { code: None, .. }));
        let newer: ServerMessage =
            serde_json::from_str(r#"{"type":"error","code":"brand_new","message":"?"}"#)
                .expect("new code");
        assert!(matches!(
            newer,
            ServerMessage::Error {
                code: Some(ErrorCode::Unknown),
                ..
            }
        ));
    }

    #[test]
    fn error_codes_round_trip() {
        for code in ErrorCode::ALL {
            let text = serde_json::to_string(code).expect("serialize");
            assert_eq!(text, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&text).expect("parse");
            assert_eq!(back, *code);
        }
    }

    #[test]
    fn rooms() {
        assert!(is_valid_room("lobby-1.a_b"));
        assert!(!is_valid_room(""));
        assert!(!is_valid_room("a b"));
        assert!(!is_valid_room(&"r".repeat(MAX_ROOM_LEN + 1)));
    }
}
