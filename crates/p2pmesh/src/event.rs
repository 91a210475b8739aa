//! What a [`Mesh`](crate::Mesh) reports: [`Event`]s and [`Message`]s, and the streams that carry them.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::BoxStream;
use mesh_core::{DirectFailure, DirectId, DisconnectReason, NodeId};
use tokio::sync::broadcast;

/// A message received from the mesh: a broadcast on a topic, or a direct message (`topic: None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The origin (its signature verified by mesh-core).
    pub from: NodeId,
    /// The topic of a broadcast; `None` for a direct message.
    pub topic: Option<String>,
    /// The application's bytes.
    pub data: Bytes,
    /// Link traversals from the origin (a hop through the signaling server counts as one).
    pub hops: u32,
}

/// What happens in the mesh, as [`Mesh::events`](crate::Mesh::events) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A link came up: the peer's signed hello verified (the seed's `peer:connect`).
    PeerConnected {
        /// The neighbour.
        peer: NodeId,
    },
    /// An up link closed (the seed's `peer:disconnect`).
    PeerDisconnected {
        /// The former neighbour.
        peer: NodeId,
        /// Why (`PeerLeft` when it left gracefully).
        reason: DisconnectReason,
    },
    /// A link attempt did not open in time (the seed's `peer:timeout`).
    PeerTimedOut {
        /// The peer.
        peer: NodeId,
    },
    /// A broadcast (of a topic this node subscribed to, or of any topic with
    /// [`receive_all_topics`](crate::MeshBuilder::receive_all_topics)) or a direct message arrived (the seed's
    /// `message`).
    Message(Message),
    /// A direct message sent with [`Mesh::send`](crate::Mesh::send) was not acknowledged.
    DirectFailed {
        /// The id `send` returned.
        id: DirectId,
        /// The addressee.
        to: NodeId,
        /// Why.
        reason: DirectFailure,
    },
    /// A peer evicted its link to us for a closer peer and proposed alternatives.
    Evicted {
        /// The peer.
        by: NodeId,
        /// Peers it proposes instead.
        alternatives: Vec<NodeId>,
    },
    /// A peer refused our link (it is full) and proposed alternatives.
    Rejected {
        /// The peer.
        by: NodeId,
        /// Peers it proposes instead.
        alternatives: Vec<NodeId>,
    },
    /// The connection to the signaling server was lost. Links stay up; with `reconnecting` the
    /// transport tries again and reports [`Event::ServerReconnected`].
    ServerDisconnected {
        /// Why, for people.
        reason: String,
        /// Whether the transport reconnects.
        reconnecting: bool,
    },
    /// Joined the signaling server again after a loss (with
    /// [`signaling_urls`](crate::MeshBuilder::signaling_urls), maybe another server of the list).
    ServerReconnected,
    /// This stream fell behind and `missed` events were dropped for it (its buffer holds the
    /// builder's `event_capacity` events).
    Lagged {
        /// How many events this stream lost.
        missed: u64,
    },
}

/// `Stream` for a handle that reads its boxed `inner` stream.
macro_rules! stream_of_inner {
    ($handle:ty, $item:ty) => {
        impl Stream for $handle {
            type Item = $item;

            fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<$item>> {
                self.inner.as_mut().poll_next(cx)
            }
        }
    };
}

/// The stream of a mesh's [`Event`]s ([`Mesh::events`](crate::Mesh::events)). It ends when the mesh
/// shuts down. A stream that is not read falls behind and then reports [`Event::Lagged`].
pub struct Events {
    inner: BoxStream<'static, Event>,
}

impl Events {
    pub(crate) fn new(rx: broadcast::Receiver<Event>) -> Self {
        let inner = futures_util::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(event) => Some((event, rx)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Some((Event::Lagged { missed }, rx))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Self {
            inner: Box::pin(inner),
        }
    }
}

stream_of_inner!(Events, Event);

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

/// The stream of one topic's [`Message`]s ([`Mesh::subscribe`](crate::Mesh::subscribe)). It ends when
/// the mesh shuts down. Dropping every subscription of a topic unsubscribes the node from it.
///
/// A subscription that is not read falls behind: beyond the builder's `subscription_capacity`
/// messages the oldest are dropped for it and counted in [`Subscription::missed`].
pub struct Subscription {
    topic: String,
    missed: Arc<AtomicU64>,
    inner: BoxStream<'static, Message>,
}

impl Subscription {
    pub(crate) fn new(topic: String, rx: broadcast::Receiver<Message>) -> Self {
        let missed = Arc::new(AtomicU64::new(0));
        let counter = missed.clone();
        let inner = futures_util::stream::unfold(rx, move |mut rx| {
            let counter = counter.clone();
            async move {
                loop {
                    match rx.recv().await {
                        Ok(message) => return Some((message, rx)),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            counter.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Self {
            topic,
            missed,
            inner: Box::pin(inner),
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Messages this subscription lost because it fell behind.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

stream_of_inner!(Subscription, Message);

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.topic)
            .field("missed", &self.missed())
            .finish_non_exhaustive()
    }
}
