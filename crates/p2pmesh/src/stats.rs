//! Counters of a mesh: the node's and the driver's.

/// What [`Mesh::stats`](crate::Mesh::stats) reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The node's counters (frames, drops, routing, links, and those of Kademlia and gossip).
    pub node: mesh_core::Stats,
    /// Link tasks running (links up or being set up).
    pub links: usize,
    /// Frames dropped because their link's queue was full (see the builder's `link_queue`).
    pub frames_dropped_full: u64,
    /// Frames for a link that was already gone.
    pub frames_dropped_no_link: u64,
    /// Signals dropped: the signaling queue was full or not running, the link was gone, or the
    /// payload did not decode.
    pub signals_dropped: u64,
    /// Server messages that were not for p2pmesh (e.g. a JavaScript client's raw WebRTC signals).
    pub foreign_signals: u64,
    /// Events dropped because the events queue was full (a reader fell behind; it gets
    /// [`Event::Lagged`](crate::Event::Lagged) once there is room).
    pub events_dropped_full: u64,
    /// Direct messages not handed over (the events queue was full or had no reader): not
    /// acknowledged, so their sender retries and at last reports them failed.
    pub direct_refused: u64,
}
