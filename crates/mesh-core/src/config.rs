//! Tunables of a [`Node`](crate::Node), and every bound on its memory.

use core::time::Duration;

/// Configuration of a [`Node`](crate::Node).
///
/// Every buffer, cache, queue and map of a node is bounded by a field here (or by a product of them,
/// stated on the field). `kademlia` and `gossip` configure the two composed cores; their own bounds are
/// documented there.
#[derive(Debug, Clone)]
pub struct Config {
    /// Links this node holds up at most. It dials no one while its links, counting those still being
    /// set up, reach it; but when full it still accepts a peer's offer or link request that covers a
    /// role it lacks or is closer than its link of that class, and evicts the redundant link once the
    /// newcomer is up. So links being set up may pass it for a while (the `mesh_node` fuzz target
    /// checks up links <= `max_peers` and attempts <= twice it). Default 5.
    pub max_peers: usize,
    /// Of `max_peers`, links kept to random peers picked bucket-uniformly from the peer book (long links
    /// that keep the mesh one small world). The rest are close links, one per close class (see
    /// `close_spacing`). Default 2.
    pub random_links: usize,
    /// Width, in k-buckets, of each close class. The `max_peers - random_links` close links cover one
    /// class each: class `i` is the buckets `lowest + i * close_spacing` up to the next class, `lowest`
    /// being the bucket of the closest known peer; long links are drawn from the buckets above. With the
    /// default 2 and three close links, the close links reach the nearest peer, one of the nearest ~4
    /// and one of the nearest ~16: spread classes join each small XOR subtree to its siblings at three
    /// scales, which keeps the mesh's diameter small and gives greedy routing its last hops.
    /// Default 2.
    pub close_spacing: usize,
    /// How long a node with a free slot leaves its last free slot to incoming links before it dials to
    /// fill it itself. While a mesh forms, nodes that fill every slot with their own choices refuse the
    /// newcomers that come after them (each refusal a routed request and answer); one slot held open a
    /// while absorbs them. Default 10 s.
    pub link_fill_delay: Duration,
    /// Peers the peer book keeps per k-bucket (distance class); the book holds at most
    /// `160 * peer_book_bucket` ids, in practice about `peer_book_bucket * log2(N)`. Default 16.
    pub peer_book_bucket: usize,
    /// Alternative peers handed to a peer that is evicted or refused (the seed's `reconnection_data` and
    /// `connection_rejected`). At most 3 in the seed. Default 3.
    pub alternatives: usize,
    /// Time a link attempt has to open and verify its hello before [`Event::PeerTimedOut`]. Default 10 s.
    ///
    /// [`Event::PeerTimedOut`]: crate::Event::PeerTimedOut
    pub link_open_timeout: Duration,
    /// Time the side of a link attempt that asks (the requester, the offerer) waits for the peer's
    /// signaling before it sends its own again (then twice as long, up to 3 times), and the interval
    /// at which a hello is sent again until the peer's verifies. Routed messages can be lost; this
    /// keeps a lost one from stalling the attempt until `link_open_timeout`. Default 2 s.
    pub signal_retry: Duration,
    /// Interval of the topology maintenance (fill free slots, replace lost links). Default 1 s.
    pub maintenance_interval: Duration,
    /// Interval of the topology maintenance while every slot holds an up link (only upgrades are left
    /// to try). A lost link brings the next maintenance back to `maintenance_interval`. Default 5 s.
    pub full_maintenance_interval: Duration,
    /// Delay before a change of our links (or of their links) is told to the links (`Neighbors`
    /// frames), so that several changes in a row cost one frame per link. Default 200 ms.
    pub announce_delay: Duration,
    /// Interval at which neighbor lists whose only change is their third level (a link's links' links)
    /// are sent anyway; changes of the first two levels go out within `announce_delay`. Default 30 s.
    pub neighbors_refresh_interval: Duration,
    /// First delay before redialling after a failed or lost link; doubled per consecutive failure, up to
    /// `reconnect_backoff_max`, with ±50 % jitter; reset by a successful link. Default 1 s.
    pub reconnect_backoff: Duration,
    /// Largest reconnection delay. Default 60 s.
    pub reconnect_backoff_max: Duration,
    /// Peers whose own dial backoff is remembered (failed, refused or evicting peers are not redialled
    /// until their backoff ends); the oldest entry is forgotten beyond this. Default 128.
    pub max_backoff_entries: usize,
    /// A link that sent nothing for this long sends a ping. Default 8 s, the rooted trees' refresh
    /// interval too (`gossip.tree_refresh_interval`), so that their refresh is the keepalive.
    pub keepalive_interval: Duration,
    /// A link that received nothing for this long is closed as dead. Default 20 s.
    pub link_idle_timeout: Duration,
    /// Largest frame written on a data channel, chunks included. Default 64 KiB - 1 KiB, under the
    /// 64 KiB message limit of WebRTC data channels.
    pub max_frame_bytes: usize,
    /// Largest message (frame before chunking) accepted or sent. Default 1 MiB.
    pub max_message_bytes: usize,
    /// Messages being reassembled at once per link; a chunk of one more drops the oldest. Default 4.
    pub max_reassembly_messages: usize,
    /// Bytes being reassembled at once per link (at most `max_message_bytes` each); past it the oldest
    /// partial message is dropped. Default 2 MiB.
    pub max_reassembly_bytes: usize,
    /// A partial message older than this is dropped. Default 30 s.
    pub reassembly_timeout: Duration,
    /// Link traversals a routed message may make, backtracking included; then the node holding it falls
    /// back to the signaling server. Default 32.
    pub hop_limit: u8,
    /// Use the signaling server as the last resort for routed messages (no link, or the mesh route failed).
    /// Default true.
    pub server_fallback: bool,
    /// Largest frame this node hands to the signaling server ([`Output::Signal`](crate::Output::Signal)
    /// payload, before the driver's framing). The server closes a connection that sends a WebSocket
    /// message over its limit (64 KiB by default, close 1009), and the driver wraps the frame as
    /// `{"type":"signal","to":"<40 hex>","signal":{"p2pmesh":"<base64>"}}`: base64 makes 4 bytes of
    /// 3, and 512 bytes are left for the JSON around it. A routed message larger than this never goes
    /// through the server (it stays on the mesh, or is dropped and counted in
    /// `Stats::dropped_server_oversized`). Default `(64 KiB - 512) / 4 * 3` = 48,768.
    pub max_signal_bytes: usize,
    /// Routed messages of other nodes this node hands to the signaling server per second on average
    /// (a token bucket refilled at this rate, fed by the `now` of the inputs), when their hop budget
    /// ran out here. The server closes a connection over its own rate (50 messages/s by default, close
    /// 1008): a linked peer's burst must not spend it for us. Over it, such a message is dropped and
    /// counted (`Stats::dropped_relay_rate`). Our own messages are not counted. Default 10.
    pub server_relay_rate: u32,
    /// The token bucket's size for `server_relay_rate` (relays of others' messages in a burst).
    /// Default 20.
    pub server_relay_burst: u32,
    /// Direct messages awaiting their end-to-end acknowledgement; `send` beyond this fails with
    /// [`Error::TooManyPending`](crate::Error::TooManyPending). Default 256.
    pub max_pending_direct: usize,
    /// Time a direct message waits for its acknowledgement before it is sent again. Default 3 s.
    pub direct_retry_timeout: Duration,
    /// Attempts per direct message; the last one goes through the signaling server when
    /// `server_fallback` is on. Default 3.
    pub direct_attempts: u32,
    /// Direct messages (and link requests and offers from peers without a link) remembered to drop
    /// duplicates and replays, each until it is older than `max_message_age`; while it is full, new
    /// ones are refused unacknowledged (their sender retries later) rather than any being forgotten
    /// early (which would let it be replayed). Default 4096.
    pub max_seen_direct: usize,
    /// A direct message, link request or offer dated (by its signed `sent_at`) more than this before
    /// `now` is refused as a replay. At least `direct_retry_timeout * direct_attempts` (a retry keeps
    /// its first date). Default 60 s.
    pub max_message_age: Duration,
    /// How far in the future (the sender's clock ahead of ours) such a message may be dated. Default
    /// 30 s, as gossip's `max_clock_skew`.
    pub max_clock_skew: Duration,
    /// Direct messages are acknowledged only once the driver confirms the application got them
    /// ([`Node::confirm_direct`](crate::Node::confirm_direct)): a driver whose application queue can
    /// be full sets it. Off: acknowledged when delivered as [`Event::Message`](crate::Event::Message).
    /// Default false.
    pub confirm_direct: bool,
    /// A link's peer may cost this many signature checks per second (routed messages to verify,
    /// gossip frames; every whole frame counts); beyond it (after a burst of twice as many) its frames
    /// are dropped, and each second spent over it counts as 10 offences (a flood). Default 1,000.
    pub link_verify_rate: u32,
    /// Offences (malformed or unexpected frames, bad signatures, frames over its budget, unsolicited
    /// answers) a link's peer may commit in a burst; one is forgiven per second. Past it the link
    /// is closed ([`DisconnectReason::Misbehaved`](crate::DisconnectReason::Misbehaved)) and the
    /// peer banned for `ban_duration`. Default 50.
    pub max_offences: u32,
    /// How long a misbehaving peer is neither dialled nor admitted. Default 10 min.
    pub ban_duration: Duration,
    /// Peers banned at once; beyond it the ban ending first is lifted early. Default 1024.
    pub max_bans: usize,
    /// Mesh lookups (`find_node`) running at once; beyond this `find_node` finishes at once with no
    /// result. Default 64.
    pub max_lookups: usize,
    /// Probes a lookup sends per round, each through a different first link. Default 3 (alpha).
    pub lookup_parallelism: usize,
    /// Rounds a lookup makes at most. Default 4.
    pub lookup_max_rounds: u32,
    /// Time a lookup round waits for its answers. Default 2 s.
    pub lookup_round_timeout: Duration,
    /// Contacts a lookup answer carries (and a lookup result holds). Default 20 (Kademlia's K).
    pub lookup_k: usize,
    /// Outputs waiting for [`Node::poll_output`](crate::Node::poll_output); past it new outputs are
    /// dropped and counted. A driver that drains after every input never comes near. Default 8192.
    pub max_outputs: usize,
    /// Configuration of the composed Kademlia node.
    pub kademlia: kademlia_core::Config,
    /// Configuration of the composed gossip node. Default: gossip-core's, with rooted trees on
    /// (`rooted_tree`, `trees` 12: breadth-first broadcast trees with different roots, stable while the
    /// links are; each message travels on the one whose root is nearest its origin) and a hop limit of
    /// 32, so that a tree may be 16 deep (a root's eccentricity on a mesh of 5 links per node is about
    /// 7-8 at 1,000 nodes and 10-11 at 10,000) and every path on it fits under the limit; announcements
    /// are flushed every 50 ms (`lazy_flush_interval`; most are dropped at flush time because the
    /// peer has shown it holds the message) and a missing message is pulled 200 ms after it was
    /// announced (`graft_timeout`); an announcement its link has not answered by showing it holds
    /// the message is sent once more 5-10 s later (`announce_repeat`). With 5% of the nodes
    /// crashing, the subtree of a dead parent waits for this repair until the link's failure is
    /// noticed. A lost push is resent after about 1.5
    /// round trips of its link (`retry_min` 100 ms, the link's round trip measured by a ping when it
    /// comes up and by the ACKs). A message is pushed on every link within 3
    /// hops of its origin (`eager_radius`), so that it enters its tree at many places near its origin
    /// (docs/decisions.md §35 has the study behind these figures).
    /// `gossip.deliver_all_topics` makes every broadcast the node accepts an [`Event::Message`](crate::Event::Message),
    /// subscribed or not.
    pub gossip: gossip_core::Config,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_peers: 5,
            random_links: 2,
            close_spacing: 2,
            link_fill_delay: Duration::from_secs(10),
            peer_book_bucket: 16,
            alternatives: 3,
            link_open_timeout: Duration::from_secs(10),
            signal_retry: Duration::from_secs(2),
            maintenance_interval: Duration::from_secs(1),
            full_maintenance_interval: Duration::from_secs(5),
            announce_delay: Duration::from_millis(200),
            neighbors_refresh_interval: Duration::from_secs(30),
            reconnect_backoff: Duration::from_secs(1),
            reconnect_backoff_max: Duration::from_secs(60),
            max_backoff_entries: 128,
            keepalive_interval: Duration::from_secs(8),
            link_idle_timeout: Duration::from_secs(20),
            max_frame_bytes: 63 * 1024,
            max_message_bytes: 1024 * 1024,
            max_reassembly_messages: 4,
            max_reassembly_bytes: 2 * 1024 * 1024,
            reassembly_timeout: Duration::from_secs(30),
            hop_limit: 32,
            server_fallback: true,
            max_signal_bytes: (64 * 1024 - 512) / 4 * 3,
            server_relay_rate: 10,
            server_relay_burst: 20,
            max_pending_direct: 256,
            direct_retry_timeout: Duration::from_secs(3),
            direct_attempts: 3,
            max_seen_direct: 4096,
            max_message_age: Duration::from_secs(60),
            max_clock_skew: Duration::from_secs(30),
            confirm_direct: false,
            link_verify_rate: 1000,
            max_offences: 50,
            ban_duration: Duration::from_secs(600),
            max_bans: 1024,
            max_lookups: 64,
            lookup_parallelism: 3,
            lookup_max_rounds: 4,
            lookup_round_timeout: Duration::from_secs(2),
            lookup_k: 20,
            max_outputs: 8192,
            kademlia: kademlia_core::Config::default(),
            gossip: gossip_core::Config {
                rooted_tree: true,
                trees: 12,
                tree_refresh_interval: Duration::from_secs(8),
                lazy_flush_interval: Duration::from_millis(50),
                graft_timeout: Duration::from_millis(200),
                announce_repeat: Duration::from_secs(5),
                retry_min: Duration::from_millis(100),
                eager_radius: 3,
                hop_limit: 32,
                ..gossip_core::Config::default()
            },
        }
    }
}

impl Config {
    /// Checks the invariants the node relies on. [`Node::new`](crate::Node::new) calls it and panics
    /// on an error (a configuration is the caller's contract); a builder should call it first and
    /// report the error.
    ///
    /// # Errors
    /// The first broken invariant, as a [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let at_least_one = [
            ("max_peers", self.max_peers),
            ("close_spacing", self.close_spacing),
            ("peer_book_bucket", self.peer_book_bucket),
            ("hop_limit", usize::from(self.hop_limit)),
            ("lookup_parallelism", self.lookup_parallelism),
            ("lookup_max_rounds", self.lookup_max_rounds as usize),
            ("lookup_k", self.lookup_k),
            ("direct_attempts", self.direct_attempts as usize),
            ("max_outputs", self.max_outputs),
            ("max_signal_bytes", self.max_signal_bytes),
            ("max_seen_direct", self.max_seen_direct),
            ("link_verify_rate", self.link_verify_rate as usize),
            ("max_offences", self.max_offences as usize),
        ];
        if let Some((field, _)) = at_least_one.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero(field));
        }
        let intervals = [
            ("maintenance_interval", self.maintenance_interval),
            ("full_maintenance_interval", self.full_maintenance_interval),
            (
                "neighbors_refresh_interval",
                self.neighbors_refresh_interval,
            ),
            ("keepalive_interval", self.keepalive_interval),
            ("link_idle_timeout", self.link_idle_timeout),
            ("link_open_timeout", self.link_open_timeout),
            ("reconnect_backoff", self.reconnect_backoff),
            ("signal_retry", self.signal_retry),
            ("direct_retry_timeout", self.direct_retry_timeout),
            ("lookup_round_timeout", self.lookup_round_timeout),
        ];
        if let Some((field, _)) = intervals.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::Zero(field));
        }
        if self.random_links > self.max_peers {
            return Err(ConfigError::RandomLinksAboveMaxPeers);
        }
        if self.reconnect_backoff_max < self.reconnect_backoff {
            return Err(ConfigError::BackoffMaxBelowBackoff);
        }
        if self.max_frame_bytes < MIN_FRAME_BYTES {
            return Err(ConfigError::FrameTooSmall);
        }
        if self.max_message_bytes < self.max_frame_bytes {
            return Err(ConfigError::MessageBelowFrame);
        }
        if self.max_reassembly_bytes < self.max_message_bytes {
            return Err(ConfigError::ReassemblyBelowMessage);
        }
        if self.max_message_bytes / (self.max_frame_bytes - crate::frame::CHUNK_OVERHEAD)
            >= usize::from(u16::MAX)
        {
            return Err(ConfigError::TooManyChunks);
        }
        if self.max_message_age < self.direct_retry_timeout * self.direct_attempts {
            return Err(ConfigError::MessageAgeBelowRetries);
        }
        self.gossip.validate()?;
        self.kademlia.validate()?;
        Ok(())
    }
}

/// The smallest `max_frame_bytes` (a data-channel message must hold a hello and a chunk header).
const MIN_FRAME_BYTES: usize = 1024;

/// Why a [`Config`] cannot work (see [`Config::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The embedded gossip-core configuration (`Config::gossip`) cannot work.
    #[error("Config::gossip: {0}")]
    Gossip(#[from] gossip_core::ConfigError),
    /// The embedded kademlia-core configuration (`Config::kademlia`) cannot work.
    #[error("Config::kademlia: {0}")]
    Kademlia(#[from] kademlia_core::ConfigError),
    /// A count that must be at least 1, or an interval that must not be zero, is zero.
    #[error("Config::{0} must not be zero")]
    Zero(&'static str),
    /// `random_links` exceeds `max_peers`.
    #[error("Config::random_links must not exceed max_peers")]
    RandomLinksAboveMaxPeers,
    /// `reconnect_backoff_max` is below `reconnect_backoff`.
    #[error("Config::reconnect_backoff_max must be at least reconnect_backoff")]
    BackoffMaxBelowBackoff,
    /// `max_frame_bytes` is below 1024.
    #[error("Config::max_frame_bytes must be at least 1024")]
    FrameTooSmall,
    /// `max_message_bytes` is below `max_frame_bytes`.
    #[error("Config::max_message_bytes must be at least max_frame_bytes")]
    MessageBelowFrame,
    /// `max_reassembly_bytes` cannot hold one message of `max_message_bytes`.
    #[error("Config::max_reassembly_bytes must hold one message of max_message_bytes")]
    ReassemblyBelowMessage,
    /// A message of `max_message_bytes` would need more than 65535 chunks.
    #[error("Config::max_message_bytes needs more than 65535 chunks")]
    TooManyChunks,
    /// `max_message_age` is shorter than a direct message's retries (`direct_retry_timeout *
    /// direct_attempts`): its last attempts would be refused as stale.
    #[error("Config::max_message_age must be at least direct_retry_timeout * direct_attempts")]
    MessageAgeBelowRetries,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_consistent() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn broken_invariants_are_named() {
        let cases = [
            (
                Config {
                    random_links: 6,
                    ..Config::default()
                },
                ConfigError::RandomLinksAboveMaxPeers,
            ),
            (
                Config {
                    max_peers: 0,
                    random_links: 0,
                    ..Config::default()
                },
                ConfigError::Zero("max_peers"),
            ),
            (
                Config {
                    lookup_k: 0,
                    ..Config::default()
                },
                ConfigError::Zero("lookup_k"),
            ),
            (
                Config {
                    keepalive_interval: Duration::ZERO,
                    ..Config::default()
                },
                ConfigError::Zero("keepalive_interval"),
            ),
            (
                Config {
                    max_message_bytes: 1000,
                    max_frame_bytes: 2000,
                    ..Config::default()
                },
                ConfigError::MessageBelowFrame,
            ),
            (
                Config {
                    reconnect_backoff_max: Duration::from_millis(1),
                    ..Config::default()
                },
                ConfigError::BackoffMaxBelowBackoff,
            ),
        ];
        for (config, error) in cases {
            assert_eq!(config.validate(), Err(error));
        }
    }

    #[test]
    #[should_panic(expected = "random_links")]
    fn a_node_refuses_a_broken_config() {
        let config = Config {
            random_links: 6,
            ..Config::default()
        };
        let _ = crate::Node::new([1; 32], config, 1);
    }
}
