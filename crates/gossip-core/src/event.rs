//! What a node asks of its driver and tells its application, and why a command is refused.

use p2pmesh_base::{Instant, NodeId};

use crate::message::MessageId;

/// What the node asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Send these bytes over the link to `to`.
    Transmit {
        /// The link's peer.
        to: NodeId,
        /// One encoded frame.
        bytes: Vec<u8>,
    },
    /// Tell the application something.
    Event(Event),
}

/// What the node tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message on a subscribed topic arrived, for the first and only time.
    Delivered {
        /// Its id.
        id: MessageId,
        /// The node that published it (its signature was checked unless unsigned messages are allowed).
        origin: NodeId,
        /// Topic.
        topic: String,
        /// Application bytes.
        payload: Vec<u8>,
        /// Hops it travelled: 1 when it came straight from its origin.
        hops: u8,
        /// When the origin published it (the origin's clock).
        timestamp: Instant,
        /// The link it arrived on.
        from: NodeId,
    },
    /// A push to `peer` was retransmitted `max_retries` times and never acknowledged: the link may be
    /// dead though still up (a hint for the layer that manages links).
    AckTimeout {
        /// The message.
        id: MessageId,
        /// The silent link.
        peer: NodeId,
    },
}

/// Why [`Node::publish`](crate::Node::publish) refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The topic is longer than `Config::max_topic_len`.
    #[error("topic is {len} bytes, the limit is {max}")]
    TopicTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is larger than `Config::max_payload_len`.
    #[error("payload is {len} bytes, the limit is {max}")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why [`Node::subscribe`](crate::Node::subscribe) refused a topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The topic is longer than `Config::max_topic_len`.
    #[error("topic is {len} bytes, the limit is {max}")]
    TopicTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `Config::max_subscriptions` topics are already subscribed.
    #[error("already subscribed to the maximum of {0} topics")]
    TooMany(usize),
}
