//! Peer ids as they appear on the signaling wire.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// Longest peer id accepted anywhere (a compatibility-mode custom id included).
pub const MAX_PEER_ID_LEN: usize = 128;

/// Length of a verified peer id: SHA-1 (20 bytes) as lowercase hex.
pub const HEX_PEER_ID_LEN: usize = 40;

/// A peer's id as written on the signaling wire: a verified id or a compatibility id, as types.
///
/// Verified peers use 40 lowercase hex characters, the SHA-1 of their ed25519 public key
/// ([`PeerId::from_public_key`]): [`PeerId::Verified`] holds those 20 bytes. A server in
/// compatibility mode also accepts the JavaScript library's custom ids: any printable ASCII
/// string of 1 to [`MAX_PEER_ID_LEN`] characters ([`PeerId::is_valid_compat`]); every id that is
/// not in the verified form is a [`PeerId::Compat`]. [`PeerId::new`] sorts a wire string into one
/// of the two, so the same string always gives the same id; the type itself does not validate a
/// compatibility id, because it is also what the client receives from a server; servers validate
/// with the two predicates.
///
/// On the wire (serde) a `PeerId` is its string, unchanged. Ids compare, order and hash as their
/// strings.
#[derive(Clone)]
pub enum PeerId {
    /// A verified-form id: the 20 bytes of SHA-1 of an ed25519 public key.
    Verified(VerifiedId),
    /// Any other id (the JavaScript library's custom ids, in compatibility mode).
    Compat(CompatId),
}

/// The 20 bytes of a verified-form [`PeerId`] (SHA-1 of an ed25519 public key), with their hex
/// form.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerifiedId {
    bytes: [u8; 20],
    hex: [u8; HEX_PEER_ID_LEN],
}

impl VerifiedId {
    /// The id of these 20 bytes.
    pub fn from_bytes(bytes: [u8; 20]) -> Self {
        let mut hex = [0u8; HEX_PEER_ID_LEN];
        // 20 bytes always fit 40 hex digits.
        let _ = hex::encode_to_slice(bytes, &mut hex);
        Self { bytes, hex }
    }

    /// The 20 bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.bytes
    }

    /// The 40 lowercase hex characters.
    pub fn as_str(&self) -> &str {
        // Hex digits are ASCII.
        std::str::from_utf8(&self.hex).unwrap_or_default()
    }
}

impl fmt::Debug for VerifiedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compatibility-mode [`PeerId`]: any string that is not a verified-form id.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CompatId(String);

impl CompatId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CompatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl PeerId {
    /// The id a wire string stands for: [`PeerId::Verified`] when it is 40 lowercase hex
    /// characters, [`PeerId::Compat`] otherwise (without further validation).
    pub fn new(id: impl Into<String>) -> Self {
        let id = id.into();
        let mut bytes = [0u8; 20];
        if is_hex_id(&id) && hex::decode_to_slice(&id, &mut bytes).is_ok() {
            Self::verified(bytes)
        } else {
            Self::Compat(CompatId(id))
        }
    }

    /// The verified id of these 20 bytes.
    pub fn verified(bytes: [u8; 20]) -> Self {
        Self::Verified(VerifiedId::from_bytes(bytes))
    }

    /// The id of an ed25519 public key: SHA-1 of its 32 bytes.
    pub fn from_public_key(public_key: &[u8; 32]) -> Self {
        Self::verified(Sha1::digest(public_key).into())
    }

    /// The verified id, if this is one.
    pub fn as_verified(&self) -> Option<&VerifiedId> {
        match self {
            Self::Verified(id) => Some(id),
            Self::Compat(_) => None,
        }
    }

    /// The id as a string slice (as on the wire).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Verified(id) => id.as_str(),
            Self::Compat(id) => id.as_str(),
        }
    }

    /// Whether this is a verified-form id: exactly 40 lowercase hex characters.
    pub fn is_valid_hex(&self) -> bool {
        matches!(self, Self::Verified(_))
    }

    /// Whether a compatibility-mode server accepts this id: 1 to [`MAX_PEER_ID_LEN`]
    /// printable ASCII characters (no spaces or control characters).
    pub fn is_valid_compat(&self) -> bool {
        is_compat_id(self.as_str())
    }

    /// The 160-bit key used for XOR distance: the 20 bytes of a verified id, otherwise SHA-1 of
    /// the id string (the JavaScript library allows custom ids).
    pub fn distance_key(&self) -> [u8; 20] {
        match self {
            Self::Verified(id) => id.bytes,
            Self::Compat(id) => Sha1::digest(id.0.as_bytes()).into(),
        }
    }
}

impl PartialEq for PeerId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for PeerId {}

impl PartialOrd for PeerId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PeerId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for PeerId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Serialize for PeerId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PeerId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

impl From<VerifiedId> for PeerId {
    fn from(id: VerifiedId) -> Self {
        Self::Verified(id)
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
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.as_str())
    }
}

impl From<&str> for PeerId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for PeerId {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl AsRef<str> for PeerId {
    fn as_ref(&self) -> &str {
        self.as_str()
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

    #[test]
    fn wire_strings_sort_into_verified_and_compat_ids() {
        let key = PeerId::from_public_key(&[9u8; 32]);
        let text = key.to_string();
        let parsed = PeerId::new(text.clone());
        assert!(matches!(parsed, PeerId::Verified(_)));
        assert_eq!(parsed, key);
        assert_eq!(
            parsed.as_verified().map(VerifiedId::as_bytes),
            Some(&key.distance_key())
        );
        assert_eq!(PeerId::verified(key.distance_key()), key);
        // Upper case is not the verified form: a compatibility id, unequal to the verified one.
        let upper = PeerId::new(text.to_uppercase());
        assert!(matches!(upper, PeerId::Compat(_)));
        assert_ne!(upper, key);
        assert!(PeerId::new("alice").as_verified().is_none());
    }

    #[test]
    fn the_wire_form_is_the_string_unchanged() {
        let key = PeerId::from_public_key(&[3u8; 32]);
        let json = serde_json::to_string(&key).expect("json");
        assert_eq!(json, format!("\"{key}\""));
        let back: PeerId = serde_json::from_str(&json).expect("parse");
        assert!(matches!(back, PeerId::Verified(_)));
        let custom: PeerId = serde_json::from_str("\"bob\"").expect("parse");
        assert_eq!(custom, PeerId::new("bob"));
        assert_eq!(serde_json::to_string(&custom).expect("json"), "\"bob\"");
        // Order and equality are the strings'.
        let mut ids = [PeerId::new("zz"), key.clone(), PeerId::new("00")];
        ids.sort();
        let strings: Vec<&str> = ids.iter().map(PeerId::as_str).collect();
        let mut sorted = strings.clone();
        sorted.sort_unstable();
        assert_eq!(strings, sorted);
    }
}
