//! Records and the bounded, expiring store of the records other nodes published.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{Instant, NodeId};

/// A value stored in the DHT under a key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Where the record lives: the `k` nodes closest to this id store it.
    pub key: NodeId,
    /// The stored bytes, at most [`Config::max_value_bytes`](crate::Config::max_value_bytes).
    #[serde(with = "crate::wire::byte_vec")]
    pub value: Vec<u8>,
    /// The node that published the record; only it republishes the record.
    pub publisher: NodeId,
    /// When the record stops existing unless its publisher republishes it.
    pub expires: Instant,
}

impl Record {
    /// Whether the record has expired at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires <= now
    }
}

impl core::fmt::Debug for Record {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The value can be 16 KiB: its length says enough in logs.
        f.debug_struct("Record")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("publisher", &self.publisher)
            .field("expires", &self.expires)
            .finish()
    }
}

/// Why the store refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// The store holds `max_records` other keys.
    Full,
}

/// The records this node holds for others, bounded in number, each removed when it expires.
#[derive(Debug, Default)]
pub(crate) struct RecordStore {
    records: BTreeMap<NodeId, Record>,
    /// The same records ordered by expiry, so that the next expiry and the expired ones are found
    /// without a scan.
    expiries: BTreeSet<(Instant, NodeId)>,
}

impl RecordStore {
    /// Stores `record`, replacing any record under its key (the latest STORE wins).
    pub(crate) fn put(&mut self, record: Record, max_records: usize) -> Result<(), StoreError> {
        match self.records.get(&record.key) {
            Some(old) => {
                self.expiries.remove(&(old.expires, old.key));
            }
            None if self.records.len() >= max_records => return Err(StoreError::Full),
            None => {}
        }
        self.expiries.insert((record.expires, record.key));
        self.records.insert(record.key, record);
        Ok(())
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
            self.records.remove(&key);
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

    fn record(n: u8, expires: u64) -> Record {
        Record {
            key: NodeId::hash([n]),
            value: vec![n],
            publisher: NodeId::hash(b"publisher"),
            expires: Instant::from_millis(expires),
        }
    }

    #[test]
    fn bounded_in_count_but_replacing_is_allowed() {
        let mut store = RecordStore::default();
        assert_eq!(store.put(record(1, 10), 2), Ok(()));
        assert_eq!(store.put(record(2, 10), 2), Ok(()));
        assert_eq!(store.put(record(3, 10), 2), Err(StoreError::Full));
        assert_eq!(store.put(record(1, 20), 2), Ok(()));
        assert_eq!(store.len(), 2);
        assert_eq!(store.next_expiry(), Some(Instant::from_millis(10)));
    }

    #[test]
    fn records_expire() {
        let mut store = RecordStore::default();
        store.put(record(1, 10), 8).expect("room");
        store.put(record(2, 30), 8).expect("room");
        let key = NodeId::hash([1]);
        assert!(store.get(&key, Instant::from_millis(9)).is_some());
        // Not served once expired, even before the driver's timer fires.
        assert!(store.get(&key, Instant::from_millis(10)).is_none());
        assert_eq!(store.expire(Instant::from_millis(10)), 1);
        assert_eq!(store.len(), 1);
        assert_eq!(store.next_expiry(), Some(Instant::from_millis(30)));
        assert_eq!(store.expire(Instant::from_millis(100)), 1);
        assert_eq!(store.next_expiry(), None);
    }
}
