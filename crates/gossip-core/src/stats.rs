//! Counters.

#[cfg(doc)]
use crate::Event;

/// Counters, cumulative since the node was created.
///
/// Payload transmissions (every time a message's bytes go out on a link) are
/// [`Stats::payload_transmissions`]; a simulator computes the relative message redundancy from them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages published by this node.
    pub published: u64,
    /// New, valid messages accepted (delivered or not).
    pub accepted: u64,
    /// [`Event::Delivered`] emitted.
    pub delivered: u64,
    /// Copies of already accepted messages received.
    pub duplicates: u64,
    /// First eager pushes of a message on a link.
    pub payload_sends: u64,
    /// Retransmissions of unacknowledged pushes.
    pub payload_retries: u64,
    /// Messages sent in answer to a GRAFT.
    pub payload_graft_responses: u64,
    /// Messages sent over other links because the link of an unacknowledged push went down.
    pub payload_reroutes: u64,
    /// Frames handed to the driver.
    pub frames_sent: u64,
    /// Bytes handed to the driver.
    pub bytes_sent: u64,
    /// Frames received from links.
    pub frames_received: u64,
    /// ACKs sent.
    pub acks_sent: u64,
    /// ACKs that settled a pending push.
    pub acks_received: u64,
    /// ACKs (or implicit acknowledgements) for nothing pending: late, duplicated or unsolicited.
    pub acks_unmatched: u64,
    /// IHAVE frames sent.
    pub ihaves_sent: u64,
    /// Announced ids sent again because their link had not shown it holds the message
    /// ([`Config::announce_repeat`](crate::Config::announce_repeat)).
    pub announces_repeated: u64,
    /// IHAVE frames received.
    pub ihaves_received: u64,
    /// GRAFT frames sent.
    pub grafts_sent: u64,
    /// GRAFT frames received.
    pub grafts_received: u64,
    /// GRAFTed ids that were no longer cached.
    pub graft_misses: u64,
    /// Announced messages given up on after `max_graft_attempts` GRAFTs (or with no announcer left).
    pub grafts_abandoned: u64,
    /// Message ids announced to new links ([`Config::catch_up_window`](crate::Config::catch_up_window)).
    pub catch_up_announced: u64,
    /// Catch-up requests sent to a new link after a silence longer than the catch-up window.
    pub catch_up_asked: u64,
    /// PRUNE frames sent.
    pub prunes_sent: u64,
    /// PRUNE frames received.
    pub prunes_received: u64,
    /// Times a later copy over a shorter path made its link the message's parent (pruning the first).
    pub parent_swaps: u64,
    /// Empty GRAFTs sent because a message's first copy came over a link this node had pruned (the
    /// copy crossed the PRUNE): the link is eager at both ends again.
    pub eager_restored: u64,
    /// Frames from a peer that is not a link (or is this node).
    pub dropped_unknown_link: u64,
    /// Frames over `Config::max_frame_len`, topics, payloads or id lists over their bounds.
    pub dropped_oversized: u64,
    /// Frames with an unknown version byte.
    pub dropped_version: u64,
    /// Frames that do not decode.
    pub dropped_malformed: u64,
    /// Messages whose id is not the hash of their content.
    pub dropped_id_mismatch: u64,
    /// Unsigned messages while signatures are required.
    pub dropped_unsigned: u64,
    /// Messages whose public key does not hash to their origin.
    pub dropped_key_mismatch: u64,
    /// Messages with an invalid signature.
    pub dropped_bad_signature: u64,
    /// Messages older than the replay window (or than a forgotten id).
    pub dropped_too_old: u64,
    /// Messages timestamped too far in the future, or from the future while such messages already hold
    /// half the seen-cache.
    pub dropped_future: u64,
    /// Always 0: a message's hop count is not signed, so a message is never dropped for it (see
    /// `hop_limit_announced`). Kept so that readers of the counters do not break.
    pub dropped_hop_limit: u64,
    /// Messages accepted at the hop limit (`Config::hop_limit`, or a count a relay raised): announced
    /// to the other links instead of pushed.
    pub hop_limit_announced: u64,
    /// New messages dropped because their origin exceeded `Config::origin_rate`.
    pub dropped_throttled: u64,
    /// Announced ids ignored because their link exceeded `Config::ihave_rate` or
    /// `Config::max_missing_per_link`.
    pub ihave_throttled: u64,
    /// Pushes given up after `max_retries` retransmissions.
    pub retries_exhausted: u64,
    /// Retransmissions abandoned because the message left the cache.
    pub retries_abandoned: u64,
    /// Pushes not tracked because `max_pending_acks` was reached.
    pub pending_overflow: u64,
    /// Announcements dropped because a link's lazy queue was full.
    pub lazy_overflow: u64,
    /// Announced messages not tracked because `max_missing` was reached.
    pub missing_overflow: u64,
    /// Ids forgotten by the seen-cache to stay within its count bound.
    pub seen_evicted: u64,
    /// Messages evicted from the message cache to stay within its bounds.
    pub cache_evicted: u64,
    /// Outputs dropped because `max_outputs` were waiting.
    pub outputs_dropped: u64,
    /// Links ignored because `max_links` were up, or because the peer is this node.
    pub links_refused: u64,
    /// Rooted trees: times this node's root or parent in a tree changed.
    pub tree_changes: u64,
    /// Rooted trees: of `tree_changes`, those that changed the root: the first root a joining node
    /// takes, a lower root reaching this node, a root lost (this node its own root meanwhile) or
    /// regained. A root that changes for every node is a wave through the whole tree.
    pub tree_root_changes: u64,
    /// Rooted trees: TREE frames sent (each carries this node's place in every tree).
    pub tree_frames_sent: u64,
    /// Rooted trees: of `tree_frames_sent`, those sent by the periodic re-send
    /// (`Config::tree_refresh_interval`) rather than for a change.
    pub tree_frames_refreshed: u64,
    /// Rooted trees: root proofs refused (bad signature, too old, from the future, or more than
    /// `Config::trees` in a frame).
    pub tree_proofs_refused: u64,
    /// Rooted trees: root proofs whose signature was checked (a proof already checked, from any
    /// link, is not checked again).
    pub tree_proofs_verified: u64,
    /// Rooted trees: hold-downs started (a path to a root lost; see `Config::tree_hold_down`).
    pub tree_holds: u64,
}

impl Stats {
    /// Every time a message's bytes went out on a link: first pushes, retries, GRAFT answers and
    /// reroutes.
    pub fn payload_transmissions(&self) -> u64 {
        self.payload_sends
            + self.payload_retries
            + self.payload_graft_responses
            + self.payload_reroutes
    }

    /// Input dropped as invalid, over all reasons.
    pub fn dropped(&self) -> u64 {
        self.dropped_unknown_link
            + self.dropped_oversized
            + self.dropped_version
            + self.dropped_malformed
            + self.dropped_id_mismatch
            + self.dropped_unsigned
            + self.dropped_key_mismatch
            + self.dropped_bad_signature
            + self.dropped_too_old
            + self.dropped_future
            + self.dropped_hop_limit
    }
}
