//! What the DHT commands ([`Mesh::put`](crate::Mesh::put), [`Mesh::get`](crate::Mesh::get),
//! [`Mesh::remove`](crate::Mesh::remove)) return.
//!
//! A record lives under a *name* (the application's key, at most
//! [`MAX_SALT_BYTES`](kademlia_core::MAX_SALT_BYTES) bytes), at the nodes closest to SHA-1 of the
//! name ([`kademlia_core::Record::key_for`]). It is signed by its publisher and first come, first
//! served: while a publisher's record (or its removal) lives, the nodes that store it refuse another
//! publisher's record under the same name ([`StoreError::OtherPublisher`]). The publisher's node
//! republishes it every Kademlia `republish_interval` (30 min) until removed; a record not
//! republished expires after `record_ttl` (1 h).
//!
//! ```
//! use futures_util::StreamExt as _;
//! use p2pmesh::{Error, Event, StoreError, memory::MemoryNetwork};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Error> {
//! let network = MemoryNetwork::new();
//! let alice = network.builder()?.build()?;
//! let mut events = alice.events();
//! alice.join().await?;
//! let bob = network.builder()?.join().await?;
//! while let Some(event) = events.next().await {
//!     if matches!(event, Event::PeerConnected { .. }) {
//!         break;
//!     }
//! }
//! let stored = alice.put("alice", "alice's value").await?;
//! assert!(stored.stored >= 1);
//! let found = bob.get("alice").await?.expect("found");
//! assert_eq!((found.publisher, &found.value[..]), (alice.local_id(), &b"alice's value"[..]));
//! alice.remove("alice").await?;
//! assert_eq!(bob.get("alice").await?, None);
//! // The name stays Alice's while her removal lives.
//! assert_eq!(
//!     bob.put("alice", "bob's value").await,
//!     Err(Error::DhtRefused(StoreError::OtherPublisher))
//! );
//! # alice.leave().await?;
//! # bob.leave().await
//! # }
//! ```

use std::time::Duration;

use kademlia_core::StoreError;
use mesh_core::{Instant, NodeId};

/// How a [`Mesh::put`](crate::Mesh::put) or [`Mesh::remove`](crate::Mesh::remove) went: at least one
/// node stored the record and, for a put, none said the name is another publisher's (else the call
/// fails with [`Error::DhtRefused`](crate::Error::DhtRefused) or
/// [`Error::DhtTimeout`](crate::Error::DhtTimeout)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOutcome {
    /// The record's key: SHA-1 of its name ([`kademlia_core::Record::key_for`]).
    pub key: NodeId,
    /// Nodes that said they store it (of the closest to the key).
    pub stored: usize,
    /// Nodes asked to store it (the node where the request arrived, and the closest it named).
    pub asked: usize,
    /// Why a node refused it (the last refusal heard), if one did while others stored it (e.g.
    /// [`StoreError::Stale`]: it holds a newer version).
    pub refused: Option<StoreError>,
}

/// A record found by [`Mesh::get`](crate::Mesh::get): its publisher's signature and its key checked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// Its name (the key given to `put`).
    pub key: Vec<u8>,
    /// The value (never empty: a removed record is not returned).
    pub value: Vec<u8>,
    /// The node that published it (SHA-1 of the key that signed it).
    pub publisher: NodeId,
    /// Its version: when it was published, in microseconds since the Unix epoch by the publisher's
    /// clock (a new value from the same publisher always has a higher one).
    pub seq: u64,
    /// How long ago it was published: this node's clock minus `seq` (zero when the publisher's clock
    /// is ahead).
    pub age: Duration,
}

impl Record {
    /// The facade's record of `record` as found at `now`; `None` for a tombstone (removed).
    pub(crate) fn found(record: kademlia_core::Record, now: Instant) -> Option<Self> {
        if record.is_tombstone() {
            return None;
        }
        Some(Self {
            publisher: record.publisher(),
            seq: record.seq,
            age: Duration::from_micros(now.as_micros().saturating_sub(record.seq)),
            key: record.salt,
            value: record.value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as a get returns it (the signature is not looked at here: mesh-core checked it).
    fn record(seq: u64, value: &[u8]) -> kademlia_core::Record {
        let keypair = crate::Keypair::from_secret([3; 32]);
        kademlia_core::Record {
            key: kademlia_core::Record::key_for(b"alice"),
            public_key: keypair.public_key(),
            salt: b"alice".to_vec(),
            seq,
            value: value.to_vec(),
            signature: [0; 64],
            expires: Instant::from_duration(Duration::from_secs(10_000)),
        }
    }

    #[test]
    fn a_found_record_has_its_age_and_a_tombstone_is_none() {
        let published = Instant::from_duration(Duration::from_secs(1_000));
        let now = published + Duration::from_secs(5);
        let found = Record::found(record(published.as_micros(), b"v"), now).expect("a value");
        assert_eq!(found.key, b"alice");
        assert_eq!(found.value, b"v");
        assert_eq!(
            found.publisher,
            crate::Keypair::from_secret([3; 32]).peer_id()
        );
        assert_eq!(found.seq, published.as_micros());
        assert_eq!(found.age, Duration::from_secs(5));
        // The publisher's clock ahead of ours: age zero.
        let early = Instant::from_duration(Duration::from_secs(999));
        let found = Record::found(record(published.as_micros(), b"v"), early).expect("a value");
        assert_eq!(found.age, Duration::ZERO);
        assert_eq!(Record::found(record(7, b""), now), None);
    }
}
