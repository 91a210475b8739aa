//! Node identifiers and the XOR metric.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// Length of a [`NodeId`] in bytes (160 bits).
pub const ID_LEN: usize = 20;

/// Number of bits in a [`NodeId`], and so the number of k-buckets.
pub const ID_BITS: usize = ID_LEN * 8;

/// A 160-bit node identifier.
///
/// A peer's id is the SHA-1 of its ed25519 public key ([`NodeId::from_public_key`]); record keys are the
/// SHA-1 of any bytes ([`NodeId::hash`]). Displayed and parsed as 40 lowercase hex characters, the same form
/// as the JavaScript p2pmesh's ids.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId([u8; ID_LEN]);

/// Lexicographic order of two 20-byte strings (ids, distances, message ids), compared as big-endian
/// words (a 128-bit and a 32-bit one): the same order as the bytes', without a call to `memcmp` (ids
/// are compared in every map of every node).
#[inline]
pub fn cmp_20(a: &[u8; ID_LEN], b: &[u8; ID_LEN]) -> core::cmp::Ordering {
    words(a).cmp(&words(b))
}

impl Ord for NodeId {
    #[inline]
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        cmp_20(&self.0, &other.0)
    }
}

impl PartialOrd for NodeId {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl NodeId {
    /// The id made of these raw bytes.
    pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// SHA-1 of arbitrary bytes: the key of a record, or an id derived from a name.
    pub fn hash(data: impl AsRef<[u8]>) -> Self {
        let digest = Sha1::digest(data.as_ref());
        let mut out = [0u8; ID_LEN];
        out.copy_from_slice(&digest);
        Self(out)
    }

    /// The id of a peer: SHA-1 of its 32-byte ed25519 public key.
    pub fn from_public_key(public_key: &[u8; 32]) -> Self {
        Self::hash(public_key)
    }

    /// XOR distance between two ids.
    #[inline]
    pub fn distance(&self, other: &NodeId) -> Distance {
        // Word-wise rather than byte-wise: lookups compute millions of distances, and this stays fast
        // in unoptimized (test) builds too.
        let (a_hi, a_lo) = words(&self.0);
        let (b_hi, b_lo) = words(&other.0);
        let mut out = [0u8; ID_LEN];
        out[..16].copy_from_slice(&(a_hi ^ b_hi).to_be_bytes());
        out[16..].copy_from_slice(&(a_lo ^ b_lo).to_be_bytes());
        Distance(out)
    }

    /// The XOR distance as a big-endian (high 128 bits, low 32 bits) pair: ordered like [`Distance`],
    /// and cheaper to compare in the hot loops of lookups.
    #[inline]
    pub fn distance_key(&self, other: &NodeId) -> (u128, u32) {
        let (a_hi, a_lo) = words(&self.0);
        let (b_hi, b_lo) = words(&other.0);
        (a_hi ^ b_hi, a_lo ^ b_lo)
    }

    /// Index of the k-bucket that `other` falls in, seen from `self`: the position of the highest bit in
    /// which the two differ, 0 (closest half-open range) to 159 (the far half of the id space).
    /// `None` when the ids are equal.
    pub fn bucket_index(&self, other: &NodeId) -> Option<usize> {
        self.distance(other).bucket_index()
    }

    /// An id at a uniformly random position inside bucket `index` as seen from `self`
    /// (used to refresh a bucket). `random` supplies the free low bits.
    ///
    /// # Panics
    /// If `index >= ID_BITS` (a caller error, never network input).
    pub fn random_in_bucket(&self, index: usize, random: [u8; ID_LEN]) -> NodeId {
        assert!(index < ID_BITS, "bucket index out of range");
        // Distance with its highest set bit at `index` and random bits below it.
        let mut d = [0u8; ID_LEN];
        for bit in 0..index {
            let byte = ID_LEN - 1 - bit / 8;
            let mask = 1u8 << (bit % 8);
            d[byte] |= random[byte] & mask;
        }
        let byte = ID_LEN - 1 - index / 8;
        d[byte] |= 1u8 << (index % 8);
        let mut out = self.0;
        for (o, x) in out.iter_mut().zip(d.iter()) {
            *o ^= x;
        }
        NodeId(out)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex characters are enough to tell ids apart in logs.
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// Why a string is not a [`NodeId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseIdError {
    /// The string is not 40 characters long.
    #[error("a node id is 40 hex characters, got {0} characters")]
    Length(usize),
    /// A character is not a lowercase hex digit.
    #[error("a node id is lowercase hex; invalid character {ch:?} at position {position}")]
    Character {
        /// The offending character.
        ch: char,
        /// Its index in the string.
        position: usize,
    },
}

impl FromStr for NodeId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let chars = s.chars().count();
        if chars != ID_LEN * 2 || s.len() != ID_LEN * 2 {
            return Err(ParseIdError::Length(chars));
        }
        let mut out = [0u8; ID_LEN];
        let bytes = s.as_bytes();
        for (i, o) in out.iter_mut().enumerate() {
            let hi = hex_digit(bytes[2 * i]).ok_or(ParseIdError::Character {
                ch: bytes[2 * i] as char,
                position: 2 * i,
            })?;
            let lo = hex_digit(bytes[2 * i + 1]).ok_or(ParseIdError::Character {
                ch: bytes[2 * i + 1] as char,
                position: 2 * i + 1,
            })?;
            *o = (hi << 4) | lo;
        }
        Ok(NodeId(out))
    }
}

/// The 160 bits as a big-endian 128-bit high part and 32-bit low part.
#[inline]
fn words(bytes: &[u8; ID_LEN]) -> (u128, u32) {
    let mut hi = [0u8; 16];
    let mut lo = [0u8; 4];
    hi.copy_from_slice(&bytes[..16]);
    lo.copy_from_slice(&bytes[16..]);
    (u128::from_be_bytes(hi), u32::from_be_bytes(lo))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// XOR distance between two [`NodeId`]s, ordered as a 160-bit unsigned integer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Distance([u8; ID_LEN]);

impl Ord for Distance {
    #[inline]
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        cmp_20(&self.0, &other.0)
    }
}

impl PartialOrd for Distance {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Distance {
    /// The raw big-endian bytes.
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// Whether bit `index` (0 = least significant, 159 = most) is set; `false` beyond 159.
    pub fn bit(&self, index: usize) -> bool {
        index < ID_BITS && self.0[ID_LEN - 1 - index / 8] & (1 << (index % 8)) != 0
    }

    /// Position of the highest set bit (0..=159), `None` for distance zero.
    pub fn bucket_index(&self) -> Option<usize> {
        let (hi, lo) = words(&self.0);
        if hi != 0 {
            Some(32 + 127 - hi.leading_zeros() as usize)
        } else if lo != 0 {
            Some(31 - lo.leading_zeros() as usize)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn word_order_is_byte_order() {
        let ids: Vec<[u8; ID_LEN]> = (0u32..300)
            .map(|i| {
                let mut b = *NodeId::hash(i.to_le_bytes()).as_bytes();
                // Long equal prefixes too, so that every word of the comparison decides somewhere.
                let keep = (i % 21) as usize;
                b[..keep].fill(0x5a);
                b
            })
            .collect();
        for a in &ids {
            for b in &ids {
                assert_eq!(cmp_20(a, b), a.cmp(b));
                assert_eq!(
                    NodeId::from_bytes(*a).cmp(&NodeId::from_bytes(*b)),
                    a.cmp(b)
                );
            }
        }
    }

    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = NodeId::hash(b"hello");
        let s = id.to_string();
        assert_eq!(s, "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
        assert_eq!(s.parse::<NodeId>(), Ok(id));
    }

    #[test]
    fn parse_errors_are_clear() {
        assert_eq!("abc".parse::<NodeId>(), Err(ParseIdError::Length(3)));
        let upper = "AAF4C61DDCC5E8A2DABEDE0F3B482CD9AEA9434D";
        assert_eq!(
            upper.parse::<NodeId>(),
            Err(ParseIdError::Character {
                ch: 'A',
                position: 0
            })
        );
        let multibyte = "é".repeat(20);
        assert!(matches!(
            multibyte.parse::<NodeId>(),
            Err(ParseIdError::Length(20))
        ));
    }

    #[test]
    fn bucket_index_is_highest_differing_bit() {
        let zero = NodeId::from_bytes([0; ID_LEN]);
        let mut b = [0u8; ID_LEN];
        b[ID_LEN - 1] = 1;
        assert_eq!(zero.bucket_index(&NodeId::from_bytes(b)), Some(0));
        b[0] = 0x80;
        assert_eq!(zero.bucket_index(&NodeId::from_bytes(b)), Some(159));
        assert_eq!(zero.bucket_index(&zero), None);
    }

    proptest::proptest! {
        #[test]
        fn distance_and_bucket_index_match_a_bitwise_reference(a: [u8; ID_LEN], b: [u8; ID_LEN]) {
            let d = NodeId::from_bytes(a).distance(&NodeId::from_bytes(b));
            for i in 0..ID_LEN {
                proptest::prop_assert_eq!(d.as_bytes()[i], a[i] ^ b[i]);
            }
            let highest = (0..ID_BITS)
                .rev()
                .find(|bit| d.as_bytes()[ID_LEN - 1 - bit / 8] & (1 << (bit % 8)) != 0);
            for bit in 0..ID_BITS {
                proptest::prop_assert_eq!(d.bit(bit), d.as_bytes()[ID_LEN - 1 - bit / 8] >> (bit % 8) & 1 == 1);
            }
            proptest::prop_assert_eq!(d.bucket_index(), highest);
            let (x, y) = (NodeId::from_bytes(a), NodeId::from_bytes(b));
            let other = NodeId::from_bytes([0x5a; ID_LEN]);
            proptest::prop_assert_eq!(
                x.distance_key(&y).cmp(&x.distance_key(&other)),
                x.distance(&y).cmp(&x.distance(&other))
            );
        }
    }

    #[test]
    fn random_in_bucket_lands_in_that_bucket() {
        let me = NodeId::hash(b"me");
        for index in [0, 1, 7, 8, 100, 159] {
            let id = me.random_in_bucket(index, [0xa5; ID_LEN]);
            assert_eq!(me.bucket_index(&id), Some(index));
        }
    }

    #[test]
    fn distance_orders_like_an_integer() {
        let a = NodeId::from_bytes([0; ID_LEN]);
        let mut x = [0u8; ID_LEN];
        x[ID_LEN - 1] = 0xff;
        let mut y = [0u8; ID_LEN];
        y[ID_LEN - 2] = 0x01;
        assert!(a.distance(&NodeId::from_bytes(x)) < a.distance(&NodeId::from_bytes(y)));
    }
}
