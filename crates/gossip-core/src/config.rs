//! Tunables and bounds.

use core::time::Duration;

/// How a node spreads a new message over its links.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Plumtree: eager pushes along a tree, batched announcements (IHAVE) on the other links, GRAFT and
    /// PRUNE to repair and trim the tree.
    #[default]
    Plumtree,
    /// The JavaScript library's flooding: on accepting a new message, push it to every link except the
    /// one it came from. No announcements, GRAFTs or PRUNEs; every push is acknowledged and retried like
    /// an eager push (as the JavaScript library retried too), and counted in
    /// [`Stats::payload_sends`](crate::Stats::payload_sends).
    Flood,
}

/// Every tunable and every bound of a [`Node`](crate::Node), with the defaults documented on each field.
///
/// The defaults suit links with round trips of up to a few hundred milliseconds (WebRTC data channels)
/// and meshes of up to tens of thousands of nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest topic, in bytes. Default 256.
    pub max_topic_len: usize,
    /// Largest payload, in bytes. Default 64 KiB. mesh-core chunks frames under the data channel's limit.
    pub max_payload_len: usize,
    /// Hops a message is pushed: a message that arrives after this many hops (or more: the count is not
    /// signed, so more counts as this many) is delivered and announced to the other links, not
    /// pushed; they pull it by GRAFT. A relay that rewrites the count thus slows a message down, never
    /// stops it. Default 16.
    pub hop_limit: u8,
    /// Whether a message must carry a valid signature of its origin. Default `true`; `false` only for
    /// compatibility with unsigning peers (a signature that is present is still checked).
    pub require_signatures: bool,
    /// Replay window: a message whose timestamp is older than this, against `now`, is refused. It is
    /// also how long the seen-cache remembers an id. Default 5 minutes.
    pub max_message_age: Duration,
    /// How far a timestamp may lie in the future (clock skew) before the message is refused.
    /// Default 30 s.
    pub max_clock_skew: Duration,
    /// Bound on the seen-cache (ids of accepted messages). When full, the oldest id is forgotten and every
    /// message not newer than it is refused from then on, so a message is never delivered twice; size it
    /// to hold `max_message_age` of traffic. Default 65 536 (about 5 MiB).
    pub max_seen: usize,
    /// Bound on the message cache (encoded messages kept for retransmission and for answering GRAFTs),
    /// in messages. Default 1024.
    pub max_cached_messages: usize,
    /// Bound on the message cache, in bytes of encoded frames. Default 16 MiB.
    pub max_cached_bytes: usize,
    /// How long a message stays in the message cache. Must exceed the longest retry schedule. Default
    /// 60 s.
    pub message_cache_ttl: Duration,
    /// Delay before the first retransmission of an unacknowledged push. Default 500 ms: above the round
    /// trip of a healthy link (so a retry rarely races a late ack, which would be a wasted payload) and
    /// well below `graft_timeout`, so that a lost push is resent by its sender (one payload) before the
    /// receiver pulls it through an announcement (a payload, a new tree edge and a redundant push back).
    pub retry_initial: Duration,
    /// Shortest wait before the first retransmission once a link's round trip is known. Each ACK of a
    /// push sent once gives a round-trip sample (Karn: never of a retransmitted push); the wait is then
    /// the smoothed round trip plus four times its variation, at least half the round trip more (RFC
    /// 6298's estimator), kept between this and `retry_initial`. So a push lost on a fast link is resent
    /// after about 1.5 round trips instead of `retry_initial`: on a tree, a lost push delays its
    /// whole subtree. Equal to `retry_initial`: no adaptation. Default 100 ms (mesh-core's too). In
    /// plain Plumtree a late retry leaves time for the lost push's subtree to GRAFT from lazy links,
    /// and the new edges' cycles are then cut by duplicates of several messages at once, which can
    /// split the tree and make more GRAFTs (docs/decisions.md §36): over the 24 seeds of the 100-node
    /// test, 500 ms made up to 168 GRAFTs in a run, 100 ms at most 18.
    pub retry_min: Duration,
    /// Each later retry waits this many times longer than the one before. Default 2.
    pub retry_factor: u32,
    /// Longest wait between two retries. Default 8 s.
    pub retry_max_delay: Duration,
    /// Retransmissions of one push before giving up (then
    /// [`Event::AckTimeout`](crate::Event::AckTimeout) is emitted). Default 5 (0.5 + 1 + 2 + 4 + 8 s).
    pub max_retries: u32,
    /// Bound on pushes waiting for an acknowledgement, over all links. A push beyond it is sent but not
    /// retried. Default 8192.
    pub max_pending_acks: usize,
    /// How long an announced (IHAVE) message may take to arrive by eager push before the node pulls it
    /// (GRAFT) from an announcer. Default 1 s: twice the first retry delay, so that a lost push is
    /// repaired by its sender's retransmission and a GRAFT (which adds a tree edge, and later a
    /// duplicate to prune) is left for real failures: a crashed parent, a lost announcement's link.
    pub graft_timeout: Duration,
    /// How long to wait for a GRAFT's answer before asking the next announcer. Default 500 ms.
    pub graft_retry_timeout: Duration,
    /// GRAFTs sent for one message before giving up on it (announcers are asked in turn). Default 6.
    pub max_graft_attempts: u32,
    /// Bound on announced-but-missing messages being tracked. Default 4096.
    pub max_missing: usize,
    /// Bound on the missing messages first announced by one link: a link announcing made-up ids fills
    /// its own share, not the table. When the table is full, a link under its share takes the place of
    /// an entry of the link holding the most. Default 1024.
    pub max_missing_per_link: usize,
    /// Announced ids a link may add to the missing messages per second (a token bucket per link,
    /// holding up to two frames' worth, `2 * max_ids_per_frame`); beyond, its announcements of
    /// unknown ids are ignored (ids already missing still gain it as an announcer). 0: no limit.
    /// Default 2048 a second.
    pub ihave_rate: u32,
    /// Bound on the announcers remembered per missing message. Default 8.
    pub max_announcers: usize,
    /// Announcements are batched per link and sent this often. An announcement for a peer that has shown
    /// it holds the message by flush time is dropped, so a longer interval saves announcements on lazy
    /// links whose two ends both received the message (most of them); a shorter one repairs sooner. Default
    /// 50 ms (mesh-core, whose rooted trees rarely need a repair, uses 250 ms).
    pub lazy_flush_interval: Duration,
    /// Bound on the announcements queued per link between two flushes. Default 4096.
    pub max_lazy_queue: usize,
    /// An announcement is sent once more one to two times this long after it was flushed (at the
    /// next multiple of this since the epoch, so that a period's repeats to one link share a
    /// frame), unless its link has shown by then that it holds the message (its own IHAVE, a
    /// copy, an ACK). An IHAVE is not acknowledged, so without a repeat a lost one is lost for
    /// good; that matters when the announcing link is a node's only source of a message (its tree
    /// parent crashed or drops traffic). Each announcement is repeated at most once; the repeats wait in one queue of at
    /// most `max_pending_acks` entries (beyond, announcements are not repeated). The cost is about
    /// one more id per lazy link and message, on the links where the other end announced first,
    /// and no payload. Zero: never repeated. Default zero; mesh-core sets 5 s.
    pub announce_repeat: Duration,
    /// Largest number of ids in one IHAVE or GRAFT frame, sent or accepted. Default 512.
    pub max_ids_per_frame: usize,
    /// Messages per second a relay accepts from one origin (a token bucket per origin, holding up to
    /// `origin_burst`): beyond, the origin's new messages are dropped at every hop
    /// ([`Stats::dropped_throttled`](crate::Stats::dropped_throttled)), before their signature is
    /// checked; only messages whose signature verified take a token, so nobody can spend another
    /// origin's. A node's own publications are not limited here (but its neighbours limit them). 0: no
    /// limit. Default 32 a second.
    pub origin_rate: u32,
    /// Messages one origin may send in a burst, above `origin_rate`. Default 128.
    pub origin_burst: u32,
    /// Bound on the origins whose rate is tracked; a full bucket is the same as none, so those are
    /// forgotten first, then the fullest. Default 4096.
    pub max_origins: usize,
    /// Bound on links. Links beyond it are ignored (and counted). Default 256.
    pub max_links: usize,
    /// Bound on subscriptions. Default 1024.
    pub max_subscriptions: usize,
    /// Deliver every message this node accepts, whatever its topic, as the JavaScript library did
    /// (its `message` event carried every broadcast). Subscriptions then only name topics; they no
    /// longer filter deliveries. Relaying is the same either way. Default `false`: only subscribed
    /// topics are delivered.
    pub deliver_all_topics: bool,
    /// Bound on outputs waiting for [`Node::poll_output`](crate::Node::poll_output); the driver drains
    /// them after every input, so this is only a safety net. Outputs beyond it are dropped and counted.
    /// Default 65 536.
    pub max_outputs: usize,
    /// The number of nodes the adaptive fanout assumes it knows. `None` (default): the number of links.
    /// Can be changed later with [`Node::set_network_size`](crate::Node::set_network_size).
    pub network_size: Option<usize>,
    /// How messages spread. Default [`Strategy::Plumtree`].
    pub strategy: Strategy,
    /// Plumtree's eager links form one *rooted* tree shared by every origin: the breadth-first tree of
    /// the node with the lowest id, built like a spanning-tree protocol (each node advertises its root and
    /// its distance to it to its links, and takes as parent the link with the lowest root, then the
    /// fewest hops, then the lowest id). The tree then depends on the links only, not on which origin
    /// published last, so it stops changing once the links do (no duplicate-driven PRUNE and GRAFT
    /// churn), and its depth is the root's eccentricity. Duplicates and GRAFTs then repair delivery
    /// without reshaping the tree. Default `false` (the first-copy tree with hop-based parent swaps);
    /// mesh-core turns it on.
    pub rooted_tree: bool,
    /// With `rooted_tree`, the number of rooted trees, each with its own root (tree `i` orders ids with
    /// their first byte offset by `i * 256 / trees`, so each tree's root is another node). The origin of
    /// a message picks the tree whose root is fewest hops away and the message travels on it: its last
    /// delivery is then at most that distance plus the tree's height, where one tree shared by every
    /// origin costs up to twice its height. Each TREE frame carries one entry per tree. At most
    /// [`MAX_TREES`](crate::wire::MAX_TREES). Default 1.
    pub trees: usize,
    /// With `rooted_tree`, a message is pushed to every link (not only to its tree's) by its origin and
    /// by every node that received it over fewer than this many hops: near its origin it spreads like
    /// a flood, and from there it enters its tree at many places instead of climbing to a common
    /// ancestor first, which cuts the detour a shared tree costs an origin far from its root. The
    /// cost is about one redundant payload per link inside the radius (with 5 links, radius 2 pushes
    /// about 25 copies more per message; the hop count of a message is not signed, so a relay that
    /// lowers it only widens this local flood around itself). 0: trees only. Default 0.
    pub eager_radius: u8,
    /// With `rooted_tree`, what one hop adds to a path's cost in the trees, beside the link's one-way
    /// latency (half its measured round trip). Each node takes the parent with the cheapest path to
    /// the root, so each tree is a fastest-path tree from its root when this is zero and a
    /// fewest-hops tree when it dwarfs the latencies; in between, a path may take more hops only
    /// when each saves more than this in latency. Default 60 ms.
    pub tree_hop_cost: Duration,
    /// A new link is told (one IHAVE) the ids of the messages this node published or accepted this
    /// recently that the link is not known to hold, and pulls what it lacks by GRAFT. Links come
    /// and go fastest while a mesh forms, which is also when newcomers greet: a push or an
    /// announcement lost with a replaced link is made up for by the link that replaces it. A
    /// node that links within this time of a message's publication may thus receive a message
    /// published shortly before it joined (at most once, like any other). A node that heard no
    /// frame on any link for longer than this (cut off) asks its next new link, with a
    /// `CatchUp` frame, for what that link accepted since shortly before the silence began (at
    /// most `message_cache_ttl`). Zero turns both off. Default zero (off); p2pmesh's facade sets
    /// 5 s.
    pub catch_up_window: Duration,
    /// With `rooted_tree`, how often a node re-sends its tree advertisements on every link (frames may
    /// be lost; a change is told at once). Default 10 s.
    pub tree_refresh_interval: Duration,
    /// With `rooted_tree`, how long a node whose parent stopped offering the root (its link went
    /// down, or it follows another root) refuses any path to that root longer than the one it had, so
    /// that the paths its own subtree still advertises through it are cleared first: no routing loop,
    /// no counting to the hop bound (with [`Config::tree_feasible_successors`], the default, it takes the root
    /// only through a link advertising less than the lowest cost it had or advertised for it within
    /// this span, which is then also the span over which advertised costs count). Also how long a
    /// tree must have kept its root and parent before
    /// this node publishes on it, when a settled tree exists. Default 2 s: longer than a change takes
    /// to cross a subtree.
    pub tree_hold_down: Duration,
    /// With `rooted_tree`, DUAL's feasibility condition for a new parent of the same root, during a
    /// hold-down and outside it: a link is taken only if it advertises less than this node's
    /// feasible distance, the lowest cost it had or advertised for that root within the last
    /// [`Config::tree_hold_down`]. It closes a transient loop the default rules allow (after a node's
    /// cost rose, a node of its subtree may still advertise a cost built on the lower one and be taken
    /// as parent), and a lost parent is replaced by any feasible link without sending the subtree to
    /// another root and back (18% fewer simulator events at 10,000 nodes). Off: a hold-down only
    /// refuses paths longer than the one it had, and a new parent outside a hold-down is not
    /// checked. Default `true` (docs/decisions.md §35).
    pub tree_feasible_successors: bool,
    /// With `rooted_tree`, the hold-down of a node whose parent was the root itself: the root may be
    /// gone, and its other neighbors may notice later (link failure detection is not simultaneous);
    /// until they have, their subtrees still offer the root. Default 6 s.
    pub tree_root_hold_down: Duration,
    /// With `rooted_tree`, how long a root's proof of itself ([`RootProof`](crate::wire::RootProof))
    /// stays valid: a `Tree` entry naming a root counts only while its sender has given a proof of that
    /// root signed no longer ago than this. A root signs a new proof when its last is a quarter of this
    /// old; each node passes it on in its next `Tree` frames (a change, or the periodic re-send), or
    /// at once, alone, when the proof a link has from it is half this old. A root that is gone thus
    /// cannot be claimed longer than this. Default 5 minutes.
    pub tree_proof_max_age: Duration,
    /// With `rooted_tree`, how long a change of this node's places waits before it is told to the
    /// links, so that several changes in a row (a new root's advertisements arriving over several
    /// links) cost one TREE frame per link. Zero: at once. Default 200 ms.
    pub tree_advert_delay: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_topic_len: 256,
            max_payload_len: 64 * 1024,
            hop_limit: 16,
            require_signatures: true,
            max_message_age: Duration::from_secs(5 * 60),
            max_clock_skew: Duration::from_secs(30),
            max_seen: 65_536,
            max_cached_messages: 1024,
            max_cached_bytes: 16 * 1024 * 1024,
            message_cache_ttl: Duration::from_secs(60),
            retry_initial: Duration::from_millis(500),
            retry_min: Duration::from_millis(100),
            retry_factor: 2,
            retry_max_delay: Duration::from_secs(8),
            max_retries: 5,
            max_pending_acks: 8192,
            graft_timeout: Duration::from_millis(1000),
            graft_retry_timeout: Duration::from_millis(500),
            max_graft_attempts: 6,
            max_missing: 4096,
            max_missing_per_link: 1024,
            ihave_rate: 2048,
            max_announcers: 8,
            lazy_flush_interval: Duration::from_millis(50),
            max_lazy_queue: 4096,
            announce_repeat: Duration::ZERO,
            max_ids_per_frame: 512,
            origin_rate: 32,
            origin_burst: 128,
            max_origins: 4096,
            max_links: 256,
            max_subscriptions: 1024,
            deliver_all_topics: false,
            max_outputs: 65_536,
            network_size: None,
            strategy: Strategy::Plumtree,
            rooted_tree: false,
            trees: 1,
            eager_radius: 0,
            tree_hop_cost: Duration::from_millis(60),
            catch_up_window: Duration::ZERO,
            tree_refresh_interval: Duration::from_secs(10),
            tree_hold_down: Duration::from_secs(2),
            tree_feasible_successors: true,
            tree_root_hold_down: Duration::from_secs(6),
            tree_advert_delay: Duration::from_millis(200),
            tree_proof_max_age: Duration::from_secs(5 * 60),
        }
    }
}

// Encoded size of everything in a gossip frame except the topic and payload bytes, rounded up: version,
// kind, id, origin, sequence number and timestamp (varints), length prefixes, hops, public key and signature.
const GOSSIP_OVERHEAD: usize = 1 + 1 + 20 + 20 + 10 + 10 + 10 + 10 + 1 + 1 + 32 + 64;

impl Config {
    /// The largest frame a node with this configuration sends or accepts; larger input is dropped before
    /// decoding.
    pub fn max_frame_len(&self) -> usize {
        let gossip = GOSSIP_OVERHEAD + self.max_topic_len + self.max_payload_len;
        // An announcement is an id and a hop count; a GRAFT entry is an id.
        let ids = 1 + 1 + 10 + self.max_ids_per_frame * (20 + 1);
        // A `Tree` frame: a root proof (key, timestamp, signature) and an entry (root, distance,
        // child flag, cost) for each tree, at most the most trees.
        let trees = self.trees.min(crate::wire::MAX_TREES);
        let tree = 1 + 1 + 10 + 10 + trees * ((32 + 10 + 64) + (20 + 1 + 1 + 5));
        gossip.max(ids).max(tree)
    }

    /// Checks the invariants the node relies on: `hop_limit`, `retry_factor`, `max_ids_per_frame`,
    /// `max_seen`, `max_announcers`, `lazy_flush_interval`, `tree_refresh_interval` and
    /// `retry_initial` and `retry_min` are not zero, and `trees` is between 1 and [`MAX_TREES`](crate::wire::MAX_TREES).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("hop_limit", self.hop_limit == 0),
            ("retry_factor", self.retry_factor == 0),
            ("max_ids_per_frame", self.max_ids_per_frame == 0),
            ("max_seen", self.max_seen == 0),
            ("max_announcers", self.max_announcers == 0),
            ("lazy_flush_interval", self.lazy_flush_interval.is_zero()),
            (
                "tree_refresh_interval",
                self.tree_refresh_interval.is_zero(),
            ),
            ("retry_initial", self.retry_initial.is_zero()),
            ("retry_min", self.retry_min.is_zero()),
            ("tree_proof_max_age", self.tree_proof_max_age.is_zero()),
        ];
        if let Some((field, _)) = positive.into_iter().find(|(_, zero)| *zero) {
            return Err(ConfigError::Zero { field });
        }
        if !(1..=crate::wire::MAX_TREES).contains(&self.trees) {
            return Err(ConfigError::Trees {
                trees: self.trees,
                max: crate::wire::MAX_TREES,
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

/// Why a [`Config`] cannot work: an invariant the node relies on is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A bound, factor, delay or interval that must be positive is zero.
    #[error("Config::{field} must not be zero")]
    Zero {
        /// The field's name.
        field: &'static str,
    },
    /// `trees` is zero or more than a TREE frame carries.
    #[error("Config::trees is {trees}, it must be between 1 and {max}")]
    Trees {
        /// `trees`.
        trees: usize,
        /// [`MAX_TREES`](crate::wire::MAX_TREES).
        max: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_each_broken_invariant_is_named() {
        assert_eq!(Config::default().validate(), Ok(()));
        let no_hops = Config {
            hop_limit: 0,
            ..Config::default()
        };
        assert_eq!(
            no_hops.validate(),
            Err(ConfigError::Zero { field: "hop_limit" })
        );
        let no_flush = Config {
            lazy_flush_interval: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(
            no_flush.validate(),
            Err(ConfigError::Zero {
                field: "lazy_flush_interval"
            })
        );
        for trees in [0, crate::wire::MAX_TREES + 1] {
            let config = Config {
                trees,
                ..Config::default()
            };
            assert!(matches!(config.validate(), Err(ConfigError::Trees { .. })));
        }
    }

    #[test]
    #[should_panic(expected = "retry_initial")]
    fn a_node_refuses_an_invalid_config() {
        let config = Config {
            retry_initial: Duration::ZERO,
            ..Config::default()
        };
        let _ = crate::Node::new(crate::Identity::from_secret_bytes(&[1; 32]), config, 1);
    }
}
