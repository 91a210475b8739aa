//! Tunables of a [`Node`](crate::Node), and every bound on its memory.

use core::time::Duration;

/// Bytes a message needs beyond its value or its contact list: version byte, enum tags, request id,
/// record key, public key, salt (up to 64 bytes), seq, signature and expiry, all with postcard's
/// worst-case varint lengths.
pub(crate) const MESSAGE_OVERHEAD: usize = 288;

/// Bytes one contact takes in a message (a 20-byte id; postcard writes arrays without a length).
pub(crate) const CONTACT_BYTES: usize = crate::ID_LEN;

/// Configuration of a [`Node`](crate::Node).
///
/// Every buffer, cache, queue and map of a node is bounded by a field here (or by a product of them,
/// stated on the field). All nodes of a network should share `k`, `max_value_bytes` and
/// `max_message_bytes`: a node drops a reply with more than its own `k` contacts, and a message larger
/// than its own limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Entries per k-bucket, contacts per reply, and the number of closest nodes a lookup must hear
    /// from before it ends. Default 20.
    pub k: usize,
    /// Requests a lookup keeps in flight at once. Default 3.
    pub alpha: usize,
    /// Time a request waits for its response before the peer counts as unresponsive. Default 2 s.
    pub request_timeout: Duration,
    /// Time after which a lookup ends with what it has found ([`QueryEnd::TimedOut`]). Default 20 s.
    ///
    /// [`QueryEnd::TimedOut`]: crate::QueryEnd::TimedOut
    pub query_timeout: Duration,
    /// A non-empty bucket that saw no lookup for this long is refreshed by a lookup of a random id in
    /// its range. Default 15 min.
    pub refresh_interval: Duration,
    /// Contacts each bucket keeps waiting for a slot: newcomers that answered us while the bucket was
    /// full, and unverified contacts learned from others. Default 8.
    pub replacement_cache_size: usize,
    /// Candidates one lookup remembers (the closest to its target are kept). At least `k + alpha`.
    /// Default 60.
    pub max_lookup_candidates: usize,
    /// Lookups running at once, counting the node's own refreshes and republications; a lookup asked
    /// for beyond this ends at once with [`QueryEnd::Rejected`]. Outstanding requests are bounded by
    /// `max_queries * (alpha + k)` plus one eviction ping per bucket: a finished query's requests are
    /// forgotten (late answers count as unmatched). Default 64.
    ///
    /// [`QueryEnd::Rejected`]: crate::QueryEnd::Rejected
    pub max_queries: usize,
    /// Records from other publishers this node stores; a STORE of a new key beyond this is refused.
    /// Default 1024.
    pub max_records: usize,
    /// Bytes (values and salts) of the records this node stores for others, in all; a STORE beyond
    /// this is refused. Default 4 MiB.
    pub max_store_bytes: usize,
    /// Records this node stores for any one publisher (public key), so that one publisher cannot fill
    /// the store. Default 64 (as `max_published`: in a network of `k` nodes or fewer, every node
    /// stores every record of a publisher).
    pub max_records_per_publisher: usize,
    /// Bytes (values and salts) this node stores for any one publisher. Default 256 KiB.
    pub max_bytes_per_publisher: usize,
    /// Records this node publishes and republishes itself; publishing one more stops the republication
    /// of the one published longest ago. Default 64.
    pub max_published: usize,
    /// Largest record value, in bytes. Default 16 KiB.
    pub max_value_bytes: usize,
    /// Largest message this node sends or accepts, in bytes; must leave room for a value of
    /// `max_value_bytes` and a reply of `k` contacts. Default 20 KiB.
    pub max_message_bytes: usize,
    /// Lifetime of a record from its (re)publication; a STORE asking for longer is cut to this.
    /// Default 1 h.
    pub record_ttl: Duration,
    /// Interval at which a publisher stores its own records again at the `k` nodes then closest to the
    /// key, which also renews their expiry. Shorter than `record_ttl`. Default 30 min.
    pub republish_interval: Duration,
    /// Outputs waiting for [`Node::poll_output`](crate::Node::poll_output). Outputs are produced only in
    /// response to inputs, so a driver that drains them after every input never comes near this; past it
    /// new outputs are dropped and counted in [`Stats::outputs_dropped`](crate::Stats::outputs_dropped).
    /// Default 4096.
    pub max_outputs: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            k: 20,
            alpha: 3,
            request_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(20),
            refresh_interval: Duration::from_secs(15 * 60),
            replacement_cache_size: 8,
            max_lookup_candidates: 60,
            max_queries: 64,
            max_records: 1024,
            max_store_bytes: 4 * 1024 * 1024,
            max_records_per_publisher: 64,
            max_bytes_per_publisher: 256 * 1024,
            max_published: 64,
            max_value_bytes: 16 * 1024,
            max_message_bytes: 20 * 1024,
            record_ttl: Duration::from_secs(60 * 60),
            republish_interval: Duration::from_secs(30 * 60),
            max_outputs: 4096,
        }
    }
}

/// Why a [`Config`] cannot work: an invariant the node relies on is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count, timeout or interval that must be positive is zero.
    #[error("Config::{field} must not be zero")]
    Zero {
        /// The field's name.
        field: &'static str,
    },
    /// `max_lookup_candidates` cannot hold the `k` closest plus the `alpha` being asked.
    #[error("Config::max_lookup_candidates ({candidates}) must be at least k + alpha ({needed})")]
    TooFewLookupCandidates {
        /// `max_lookup_candidates`.
        candidates: usize,
        /// `k + alpha`.
        needed: usize,
    },
    /// `max_message_bytes` leaves no room for a value of `max_value_bytes`.
    #[error(
        "Config::max_message_bytes ({max_message_bytes}) must leave room for a value of max_value_bytes ({needed} bytes)"
    )]
    NoRoomForValue {
        /// `max_message_bytes`.
        max_message_bytes: usize,
        /// The smallest `max_message_bytes` that fits such a value.
        needed: usize,
    },
    /// `max_message_bytes` leaves no room for `k` contacts.
    #[error(
        "Config::max_message_bytes ({max_message_bytes}) must leave room for k contacts ({needed} bytes)"
    )]
    NoRoomForContacts {
        /// `max_message_bytes`.
        max_message_bytes: usize,
        /// The smallest `max_message_bytes` that fits `k` contacts.
        needed: usize,
    },
    /// Records would expire before they are republished.
    #[error(
        "Config::republish_interval ({republish_interval:?}) must be shorter than record_ttl ({record_ttl:?})"
    )]
    RepublishAfterExpiry {
        /// `republish_interval`.
        republish_interval: Duration,
        /// `record_ttl`.
        record_ttl: Duration,
    },
}

impl Config {
    /// Checks the invariants the node relies on: `k`, `alpha`, `max_queries`, `max_outputs`,
    /// `request_timeout` and `refresh_interval` are not zero, a lookup holds at least `k + alpha`
    /// candidates, a message fits a value of `max_value_bytes` and `k` contacts, and records are
    /// republished before they expire.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("k", self.k == 0),
            ("alpha", self.alpha == 0),
            ("max_queries", self.max_queries == 0),
            ("max_outputs", self.max_outputs == 0),
            ("request_timeout", self.request_timeout.is_zero()),
            ("refresh_interval", self.refresh_interval.is_zero()),
        ];
        if let Some((field, _)) = positive.into_iter().find(|(_, zero)| *zero) {
            return Err(ConfigError::Zero { field });
        }
        let needed = self.k.saturating_add(self.alpha);
        if self.max_lookup_candidates < needed {
            return Err(ConfigError::TooFewLookupCandidates {
                candidates: self.max_lookup_candidates,
                needed,
            });
        }
        let needed = self.max_value_bytes.saturating_add(MESSAGE_OVERHEAD);
        if self.max_message_bytes < needed {
            return Err(ConfigError::NoRoomForValue {
                max_message_bytes: self.max_message_bytes,
                needed,
            });
        }
        let needed = self
            .k
            .saturating_mul(CONTACT_BYTES)
            .saturating_add(MESSAGE_OVERHEAD);
        if self.max_message_bytes < needed {
            return Err(ConfigError::NoRoomForContacts {
                max_message_bytes: self.max_message_bytes,
                needed,
            });
        }
        if self.republish_interval >= self.record_ttl {
            return Err(ConfigError::RepublishAfterExpiry {
                republish_interval: self.republish_interval,
                record_ttl: self.record_ttl,
            });
        }
        Ok(())
    }

    /// Panics with [`Config::validate`]'s error if the configuration cannot work (a caller error).
    pub(crate) fn check(&self) {
        if let Err(error) = self.validate() {
            panic!("{error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_consistent() {
        assert_eq!(Config::default().validate(), Ok(()));
        Config::default().check();
    }

    #[test]
    fn each_broken_invariant_is_named() {
        let zero_k = Config {
            k: 0,
            ..Config::default()
        };
        assert_eq!(zero_k.validate(), Err(ConfigError::Zero { field: "k" }));
        let few = Config {
            max_lookup_candidates: 3,
            ..Config::default()
        };
        assert!(matches!(
            few.validate(),
            Err(ConfigError::TooFewLookupCandidates { candidates: 3, .. })
        ));
        let big_value = Config {
            max_value_bytes: 20 * 1024,
            ..Config::default()
        };
        assert!(matches!(
            big_value.validate(),
            Err(ConfigError::NoRoomForValue { .. })
        ));
        let many_contacts = Config {
            k: 10_000,
            max_lookup_candidates: 20_000,
            ..Config::default()
        };
        assert!(matches!(
            many_contacts.validate(),
            Err(ConfigError::NoRoomForContacts { .. })
        ));
        let late = Config {
            republish_interval: Config::default().record_ttl,
            ..Config::default()
        };
        assert!(matches!(
            late.validate(),
            Err(ConfigError::RepublishAfterExpiry { .. })
        ));
    }

    #[test]
    #[should_panic(expected = "max_message_bytes")]
    fn too_small_messages_are_refused() {
        Config {
            max_message_bytes: 100,
            ..Config::default()
        }
        .check();
    }
}
