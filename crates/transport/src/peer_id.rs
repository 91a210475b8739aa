//! Peer ids as they appear on the signaling wire.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// Longest peer id accepted anywhere (a compatibility-mode custom id included).
pub const MAX_PEER_ID_LEN: usize = 128;

/// Length of a verified peer id: SHA-1 (20 bytes) as lowercase hex.
pub const HEX_PEER_ID_LEN: usize = 40;

/// A peer's id as written on the signaling wire.
///
/// Verified peers use 40 lowercase hex characters, the SHA-1 of their ed25519 public key
/// ([`PeerId::from_public_key`]). A server in compatibility mode also accepts the JavaScript
/// library's custom ids: any printable ASCII string of 1 to [`MAX_PEER_ID_LEN`] characters
/// ([`PeerId::is_valid_compat`]). The type itself does not validate, because it is also what
/// the client receives from a server; servers validate with the two predicates.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(String);

impl PeerId {
    /// Wrap a string as a peer id, without validation.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id of an ed25519 public key: lowercase hex of SHA-1 of its 32 bytes.
    pub fn from_public_key(public_key: &[u8; 32]) -> Self {
        Self(hex::encode(Sha1::digest(public_key)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a verified-form id: exactly 40 lowercase hex characters.
    pub fn is_valid_hex(&self) -> bool {
        is_hex_id(&self.0)
    }

    /// Whether a compatibility-mode server accepts this id: 1 to [`MAX_PEER_ID_LEN`]
    /// printable ASCII characters (no spaces or control characters).
    pub fn is_valid_compat(&self) -> bool {
        is_compat_id(&self.0)
    }

    /// The 160-bit key used for XOR distance: the 20 bytes of a hex id, otherwise SHA-1 of
    /// the id string (the JavaScript library allows custom ids).
    pub fn distance_key(&self) -> [u8; 20] {
        distance_key(&self.0)
    }
}

/// Whether `s` is exactly 40 lowercase hex characters.
pub fn is_hex_id(s: &str) -> bool {
    s.len() == HEX_PEER_ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` is an acceptable compatibility-mode id (see [`PeerId::is_valid_compat`]).
pub fn is_compat_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_PEER_ID_LEN && s.bytes().all(|b| b.is_ascii_graphic())
}

/// The 160-bit XOR-distance key of an id string (see [`PeerId::distance_key`]).
pub fn distance_key(s: &str) -> [u8; 20] {
    let mut key = [0u8; 20];
    if is_hex_id(s) && hex::decode_to_slice(s, &mut key).is_ok() {
        return key;
    }
    key.copy_from_slice(&Sha1::digest(s.as_bytes()));
    key
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.0)
    }
}

impl From<&str> for PeerId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for PeerId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl AsRef<str> for PeerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_are_their_own_key_and_others_are_hashed() {
        let id = PeerId::from_public_key(&[7u8; 32]);
        assert!(id.is_valid_hex());
        let mut raw = [0u8; 20];
        hex::decode_to_slice(id.as_str(), &mut raw).expect("hex");
        assert_eq!(id.distance_key(), raw);
        let custom = PeerId::new("alice");
        assert!(!custom.is_valid_hex());
        assert!(custom.is_valid_compat());
        assert_ne!(custom.distance_key(), [0u8; 20]);
    }

    #[test]
    fn validation_rejects_bad_ids() {
        assert!(!PeerId::new("ABCDEF0123456789ABCDEF0123456789ABCDEF01").is_valid_hex());
        assert!(!PeerId::new("abc").is_valid_hex());
        assert!(!PeerId::new("").is_valid_compat());
        assert!(!PeerId::new("has space").is_valid_compat());
        assert!(!PeerId::new("x".repeat(MAX_PEER_ID_LEN + 1)).is_valid_compat());
    }
}
