//! Signed mutable records (after BitTorrent's BEP 44, with names instead of per-publisher salts) and
//! the bounded, expiring store of the records other nodes published.
//!
//! # The record
//!
//! A [`Record`] is a value under a *name* (the user's key: at most [`MAX_SALT_BYTES`] bytes, kept in
//! the `salt` field for BEP 44's sake), published by the holder of an ed25519 key. Its `key`, where it
//! lives in the DHT, is SHA-1 of [`KEY_DOMAIN`] followed by the name ([`Record::key_for`]), the same
//! for every publisher, so that anyone who knows the name finds the record; its `signature` covers the
//! name, a sequence number `seq` and the value ([`Record::signed_bytes`]). Hence:
//!
//! - nobody but its publisher can produce a record (a signature cannot be forged), so a forged answer
//!   or STORE is recognised and dropped by the node that receives it;
//! - a stored record is replaced only by a record of the same publisher with a higher `seq`; the same
//!   `seq` is accepted again only for the very same record (a republication, which renews its expiry).
//!   A name is held by the first publisher a storer saw for it until that record expires (first come,
//!   first served: see docs/security.md on squatting);
//! - a record with an empty value is a *tombstone*: its publisher removed the name, and the tombstone
//!   keeps the name its own until it expires.
//!
//! `expires` is not signed: each storer caps it at its own `record_ttl`, and the publisher refreshes it
//! by republishing the same signed record.
//!
//! # The store
//!
//! A node bounds what other publishers may make it hold: `max_records` records and
//! `max_store_bytes` bytes in all, and `max_records_per_publisher` records and
//! `max_bytes_per_publisher` bytes from any one public key (see [`Config`](crate::Config)), so that one
//! publisher cannot fill the store and others can still store.

use std::collections::{BTreeMap, BTreeSet};

use p2pmesh_base::{PUBLIC_KEY_LEN, SIGNATURE_LEN, Signer};
use serde::{Deserialize, Serialize};

use crate::{Instant, NodeId};

/// Longest salt, in bytes (as BEP 44).
pub const MAX_SALT_BYTES: usize = 64;

/// The prefix of the bytes hashed into a record's key ([`Record::key_for`]).
pub const KEY_DOMAIN: &[u8] = b"p2pmesh/kad/key/v1";

/// The prefix of the bytes a record's signature covers, so that a record signature cannot be taken for
/// any other signature made with the same key (hello, routed message, broadcast).
pub const SIGNATURE_DOMAIN: &[u8] = b"p2pmesh/kad/record/v1";

/// A checker of ed25519 signatures: `(public_key, message, signature) -> valid`. The node takes one
/// as an input ([`Node::with_verifier`](crate::Node::with_verifier)) so that it stays free of any
/// particular implementation; [`p2pmesh_base::verify`] (strict ed25519) by default.
pub type Verify = fn(&[u8; PUBLIC_KEY_LEN], &[u8], &[u8; SIGNATURE_LEN]) -> bool;

/// A value stored in the DHT under a key, signed by its publisher.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Where the record lives (the `k` nodes closest to this id store it): always
    /// [`Record::key_for`]`(salt)`, checked on decoding.
    pub key: NodeId,
    /// The publisher's ed25519 public key; its node id is [`Record::publisher`].
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// The record's name (the user's key), at most [`MAX_SALT_BYTES`] bytes.
    #[serde(with = "crate::wire::byte_vec")]
    pub salt: Vec<u8>,
    /// The version: a record replaces a stored one under the same key only with a higher `seq`.
    pub seq: u64,
    /// The stored bytes, at most [`Config::max_value_bytes`](crate::Config::max_value_bytes).
    #[serde(with = "crate::wire::byte_vec")]
    pub value: Vec<u8>,
    /// The publisher's signature over [`Record::signed_bytes`]`(salt, seq, value)`.
    #[serde(with = "signature_bytes")]
    pub signature: [u8; SIGNATURE_LEN],
    /// When the record stops existing unless its publisher republishes it (not signed: a storer caps
    /// it at its `record_ttl`).
    pub expires: Instant,
}

impl Record {
    /// A record of `value` under the name `salt`, version `seq`, signed by `signer`.
    ///
    /// # Panics
    /// If `salt` is longer than [`MAX_SALT_BYTES`] (a caller error: no node would accept the record).
    pub fn sign(
        signer: &impl Signer,
        salt: Vec<u8>,
        seq: u64,
        value: Vec<u8>,
        expires: Instant,
    ) -> Record {
        assert!(
            salt.len() <= MAX_SALT_BYTES,
            "Record::sign: a salt of {} bytes exceeds MAX_SALT_BYTES ({MAX_SALT_BYTES})",
            salt.len()
        );
        let public_key = signer.public_key();
        let signature = signer.sign(&Record::signed_bytes(&salt, seq, &value));
        Record {
            key: Record::key_for(&salt),
            public_key,
            salt,
            seq,
            value,
            signature,
            expires,
        }
    }

    /// The key of the records named `name`: SHA-1 of [`KEY_DOMAIN`] followed by the name. The same
    /// for every publisher: whoever knows the name finds the record.
    pub fn key_for(name: &[u8]) -> NodeId {
        let mut bytes = Vec::with_capacity(KEY_DOMAIN.len() + name.len());
        bytes.extend_from_slice(KEY_DOMAIN);
        bytes.extend_from_slice(name);
        NodeId::hash(bytes)
    }

    /// Whether the record is a tombstone (an empty value: its publisher removed the name).
    pub fn is_tombstone(&self) -> bool {
        self.value.is_empty()
    }

    /// What a record's signature covers: [`SIGNATURE_DOMAIN`], the salt's length (one byte) and the
    /// salt, `seq` (8 bytes, big-endian), then the value.
    pub fn signed_bytes(salt: &[u8], seq: u64, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIGNATURE_DOMAIN.len() + 1 + salt.len() + 8 + value.len());
        out.extend_from_slice(SIGNATURE_DOMAIN);
        // A salt is at most 64 bytes: its length fits one byte (the shape check refuses longer ones).
        out.push(salt.len().min(u8::MAX as usize) as u8);
        out.extend_from_slice(salt);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    /// The publisher's node id: SHA-1 of its public key.
    pub fn publisher(&self) -> NodeId {
        NodeId::from_public_key(&self.public_key)
    }

    /// Whether the record has expired at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires <= now
    }

    /// The checks that need no signature verification: the salt's length and the key's derivation.
    pub fn is_well_formed(&self) -> bool {
        self.salt.len() <= MAX_SALT_BYTES && self.key == Record::key_for(&self.salt)
    }

    /// Whether the record is well formed and its signature is valid under `verify`.
    pub fn verify(&self, verify: Verify) -> bool {
        self.is_well_formed()
            && verify(
                &self.public_key,
                &Record::signed_bytes(&self.salt, self.seq, &self.value),
                &self.signature,
            )
    }

    /// Whether `other` is the same signed record (only `expires` may differ).
    fn same_signed(&self, other: &Record) -> bool {
        self.key == other.key
            && self.public_key == other.public_key
            && self.seq == other.seq
            && self.value == other.value
            && self.signature == other.signature
    }

    /// The bytes the record costs a store, counted against the byte quotas.
    pub fn stored_bytes(&self) -> usize {
        self.value.len() + self.salt.len()
    }
}

impl core::fmt::Debug for Record {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The value can be 16 KiB: its length says enough in logs.
        f.debug_struct("Record")
            .field("key", &self.key)
            .field("publisher", &self.publisher())
            .field("salt_len", &self.salt.len())
            .field("seq", &self.seq)
            .field("value_len", &self.value.len())
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// A signature on the wire: a 64-byte string (serde derives arrays only up to 32 elements).
mod signature_bytes {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    use p2pmesh_base::SIGNATURE_LEN;

    pub(super) fn serialize<S: Serializer>(
        v: &[u8; SIGNATURE_LEN],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<[u8; SIGNATURE_LEN], D::Error> {
        struct Sig;
        impl Visitor<'_> for Sig {
            type Value = [u8; SIGNATURE_LEN];
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a 64-byte signature")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(Sig)
    }
}

/// Why a node refused to store a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StoreError {
    /// A record under this name from another publisher is stored (the name is taken until it
    /// expires).
    OtherPublisher,
    /// The stored record has a higher `seq`, or the same `seq` with other contents.
    Stale,
    /// The publisher holds its quota of records or bytes here.
    PublisherQuota,
    /// The store holds `max_records` records or `max_store_bytes` bytes.
    Full,
    /// Not well formed, or its signature does not verify.
    Invalid,
    /// Already expired.
    Expired,
    /// Its value is larger than the storer's `max_value_bytes`.
    TooLarge,
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            StoreError::OtherPublisher => "the name is held by another publisher",
            StoreError::Stale => "a newer version is stored",
            StoreError::PublisherQuota => "the publisher's quota at the storer is used up",
            StoreError::Full => "the storer's record store is full",
            StoreError::Invalid => "the record is malformed or its signature does not verify",
            StoreError::Expired => "the record has expired",
            StoreError::TooLarge => "the value is larger than the storer accepts",
        })
    }
}

/// The bounds of a [`RecordStore`], from the [`Config`](crate::Config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreLimits {
    pub(crate) max_records: usize,
    pub(crate) max_bytes: usize,
    pub(crate) max_records_per_publisher: usize,
    pub(crate) max_bytes_per_publisher: usize,
}

impl StoreLimits {
    pub(crate) fn from_config(c: &crate::Config) -> Self {
        Self {
            max_records: c.max_records,
            max_bytes: c.max_store_bytes,
            max_records_per_publisher: c.max_records_per_publisher,
            max_bytes_per_publisher: c.max_bytes_per_publisher,
        }
    }
}

/// Records and bytes held for one publisher.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    records: usize,
    bytes: usize,
}

/// The records this node holds for others, bounded in number and bytes, in all and per publisher, each
/// removed when it expires. It holds only records whose signature the node checked.
#[derive(Debug, Default)]
pub(crate) struct RecordStore {
    records: BTreeMap<NodeId, Record>,
    /// The same records ordered by expiry, so that the next expiry and the expired ones are found
    /// without a scan.
    expiries: BTreeSet<(Instant, NodeId)>,
    /// What each publisher (by public key) holds here; an entry exists only while it holds a record,
    /// so this map is bounded by `max_records`.
    usage: BTreeMap<[u8; PUBLIC_KEY_LEN], Usage>,
    bytes: usize,
}

impl RecordStore {
    /// Stores `record` (whose signature the caller checked) under the rules of the module docs: a
    /// record under a held key must come from the same publisher with a higher `seq` (or be the same
    /// record again, which renews its expiry), and the publisher's and the store's bounds must hold
    /// after the change.
    pub(crate) fn put(&mut self, record: Record, limits: &StoreLimits) -> Result<(), StoreError> {
        let old = self.records.get(&record.key);
        let (freed_records, freed_bytes) = match old {
            Some(old) if old.public_key != record.public_key => {
                return Err(StoreError::OtherPublisher);
            }
            Some(old) if record.seq < old.seq => return Err(StoreError::Stale),
            Some(old) if record.seq == old.seq && !old.same_signed(&record) => {
                return Err(StoreError::Stale);
            }
            Some(old) => (1, old.stored_bytes()),
            None => (0, 0),
        };
        let size = record.stored_bytes();
        let usage = self
            .usage
            .get(&record.public_key)
            .copied()
            .unwrap_or_default();
        // The old record is counted in the usage and the totals: saturating only guards the arithmetic.
        let after = |held: usize, freed: usize, added: usize| held.saturating_sub(freed) + added;
        if after(usage.records, freed_records, 1) > limits.max_records_per_publisher
            || after(usage.bytes, freed_bytes, size) > limits.max_bytes_per_publisher
        {
            return Err(StoreError::PublisherQuota);
        }
        if after(self.records.len(), freed_records, 1) > limits.max_records
            || after(self.bytes, freed_bytes, size) > limits.max_bytes
        {
            return Err(StoreError::Full);
        }
        if let Some(old) = self.records.remove(&record.key) {
            self.expiries.remove(&(old.expires, old.key));
            self.release(&old);
        }
        let usage = self.usage.entry(record.public_key).or_default();
        usage.records += 1;
        usage.bytes += size;
        self.bytes += size;
        self.expiries.insert((record.expires, record.key));
        self.records.insert(record.key, record);
        Ok(())
    }

    fn release(&mut self, old: &Record) {
        let size = old.stored_bytes();
        self.bytes = self.bytes.saturating_sub(size);
        if let Some(u) = self.usage.get_mut(&old.public_key) {
            u.records = u.records.saturating_sub(1);
            u.bytes = u.bytes.saturating_sub(size);
            if u.records == 0 {
                self.usage.remove(&old.public_key);
            }
        }
    }

    /// Removes the record under `key`, if any.
    pub(crate) fn remove(&mut self, key: &NodeId) -> Option<Record> {
        let old = self.records.remove(key)?;
        self.expiries.remove(&(old.expires, old.key));
        self.release(&old);
        Some(old)
    }

    /// The unexpired record under `key`.
    pub(crate) fn get(&self, key: &NodeId, now: Instant) -> Option<&Record> {
        self.records.get(key).filter(|r| !r.is_expired(now))
    }

    /// Removes every record expired at `now`; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while let Some(&(expires, key)) = self.expiries.first() {
            if expires > now {
                break;
            }
            self.expiries.pop_first();
            if let Some(old) = self.records.remove(&key) {
                self.release(&old);
            }
            removed += 1;
        }
        removed
    }

    /// When the next record expires.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first().map(|(t, _)| *t)
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pmesh_base::Identity;

    fn publisher(n: u8) -> Identity {
        Identity::from_secret_bytes(&[n; 32])
    }

    fn limits(records: usize, per_publisher: usize) -> StoreLimits {
        StoreLimits {
            max_records: records,
            max_bytes: 1 << 20,
            max_records_per_publisher: per_publisher,
            max_bytes_per_publisher: 1 << 20,
        }
    }

    /// Publisher `p`'s record `salt` (names are global: the name is made of both).
    fn record(p: u8, salt: u8, seq: u64, expires: u64) -> Record {
        Record::sign(
            &publisher(p),
            vec![p * 16 + salt],
            seq,
            vec![p, salt],
            Instant::from_millis(expires),
        )
    }

    #[test]
    fn signed_records_verify_and_tampering_is_seen() {
        let r = record(1, 0, 1, 10);
        assert!(r.verify(p2pmesh_base::verify));
        assert_eq!(r.publisher(), publisher(1).id());
        let theirs = Record::sign(&publisher(2), vec![16], 1, vec![], Instant::ZERO);
        assert_eq!(
            theirs.key, r.key,
            "a name is the same key for every publisher"
        );
        assert_eq!(r.key, Record::key_for(&[16]));
        assert!(theirs.is_tombstone() && !r.is_tombstone());
        let mut value = r.clone();
        value.value.push(0);
        assert!(!value.verify(p2pmesh_base::verify));
        let mut seq = r.clone();
        seq.seq += 1;
        assert!(!seq.verify(p2pmesh_base::verify));
        // Another publisher's key on the victim's record: well formed, but the signature fails.
        let mut key = r.clone();
        key.public_key = publisher(2).public_key();
        assert!(key.is_well_formed() && !key.verify(p2pmesh_base::verify));
        // Expiry is not signed: the publisher renews it without signing again.
        let mut later = r;
        later.expires = Instant::from_millis(99);
        assert!(later.verify(p2pmesh_base::verify));
    }

    #[test]
    fn bounded_in_count_but_replacing_is_allowed() {
        let mut store = RecordStore::default();
        let l = limits(2, 8);
        assert_eq!(store.put(record(1, 1, 1, 10), &l), Ok(()));
        assert_eq!(store.put(record(1, 2, 1, 10), &l), Ok(()));
        assert_eq!(store.put(record(1, 3, 1, 10), &l), Err(StoreError::Full));
        assert_eq!(store.put(record(1, 1, 2, 20), &l), Ok(()));
        assert_eq!(store.len(), 2);
        assert_eq!(store.next_expiry(), Some(Instant::from_millis(10)));
    }

    #[test]
    fn only_a_higher_seq_replaces() {
        let mut store = RecordStore::default();
        let l = limits(8, 8);
        assert_eq!(store.put(record(1, 1, 5, 10), &l), Ok(()));
        assert_eq!(store.put(record(1, 1, 4, 10), &l), Err(StoreError::Stale));
        let mut other_value =
            Record::sign(&publisher(1), vec![17], 5, b"x".to_vec(), Instant::ZERO);
        other_value.expires = Instant::from_millis(10);
        assert_eq!(store.put(other_value, &l), Err(StoreError::Stale));
        // The same record again renews its expiry.
        assert_eq!(store.put(record(1, 1, 5, 30), &l), Ok(()));
        assert_eq!(store.next_expiry(), Some(Instant::from_millis(30)));
        assert_eq!(store.put(record(1, 1, 6, 30), &l), Ok(()));
        let key = record(1, 1, 6, 30).key;
        assert_eq!(store.get(&key, Instant::ZERO).map(|r| r.seq), Some(6));
        // A record of another key under this key is refused even if it got this far.
        let mut intruder = record(2, 1, 7, 30);
        intruder.key = key;
        assert_eq!(store.put(intruder, &l), Err(StoreError::OtherPublisher));
    }

    #[test]
    fn a_publisher_cannot_fill_the_store() {
        let mut store = RecordStore::default();
        let mut l = limits(4, 2);
        assert_eq!(store.put(record(1, 1, 1, 10), &l), Ok(()));
        assert_eq!(store.put(record(1, 2, 1, 10), &l), Ok(()));
        assert_eq!(
            store.put(record(1, 3, 1, 10), &l),
            Err(StoreError::PublisherQuota)
        );
        // Replacing within the quota is fine, and others still store.
        assert_eq!(store.put(record(1, 2, 2, 10), &l), Ok(()));
        assert_eq!(store.put(record(2, 1, 1, 10), &l), Ok(()));
        // Bytes: a value that would take the publisher over its byte quota is refused.
        l.max_bytes_per_publisher = 6;
        let big = Record::sign(
            &publisher(3),
            vec![],
            1,
            vec![0; 7],
            Instant::from_millis(10),
        );
        assert_eq!(store.put(big, &l), Err(StoreError::PublisherQuota));
        // Expiry frees the quota.
        assert_eq!(store.expire(Instant::from_millis(10)), 3);
        assert_eq!(store.put(record(1, 3, 1, 20), &l), Ok(()));
        assert_eq!(store.bytes, 3);
    }

    #[test]
    fn bounded_in_bytes() {
        let mut store = RecordStore::default();
        let mut l = limits(8, 8);
        l.max_bytes = 5;
        // Two bytes of value and one of salt each.
        assert_eq!(store.put(record(1, 1, 1, 10), &l), Ok(()));
        assert_eq!(store.put(record(2, 1, 1, 10), &l), Err(StoreError::Full));
        // Replacing counts the new size, not the sum of old and new.
        assert_eq!(store.put(record(1, 1, 2, 10), &l), Ok(()));
        assert_eq!(store.bytes, 3);
    }

    #[test]
    fn records_expire() {
        let mut store = RecordStore::default();
        let l = limits(8, 8);
        store.put(record(1, 1, 1, 10), &l).expect("room");
        store.put(record(1, 2, 1, 30), &l).expect("room");
        let key = record(1, 1, 1, 10).key;
        assert!(store.get(&key, Instant::from_millis(9)).is_some());
        // Not served once expired, even before the driver's timer fires.
        assert!(store.get(&key, Instant::from_millis(10)).is_none());
        assert_eq!(store.expire(Instant::from_millis(10)), 1);
        assert_eq!(store.len(), 1);
        assert_eq!(store.next_expiry(), Some(Instant::from_millis(30)));
        assert_eq!(store.expire(Instant::from_millis(100)), 1);
        assert_eq!(store.next_expiry(), None);
        assert!(store.usage.is_empty());
        assert_eq!(store.bytes, 0);
    }
}
