//! [`Mesh`]: the handle the application holds.

use mesh_core::{DirectId, NodeId};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::dht::{PutOutcome, Record};
use crate::event::{Event, Events, Message, Subscription};
use crate::{Error, MeshBuilder, Stats};

/// What the handle asks the driver; each carries the reply's sender.
pub(crate) enum Command {
    Join(oneshot::Sender<Result<(), Error>>),
    Leave(oneshot::Sender<()>),
    Send {
        to: NodeId,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<DirectId, Error>>,
    },
    Broadcast {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<gossip_core::MessageId, Error>>,
    },
    Subscribe {
        topic: String,
        reply: oneshot::Sender<Result<broadcast::Receiver<Message>, Error>>,
    },
    FindNode {
        target: NodeId,
        reply: oneshot::Sender<Vec<NodeId>>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<PutOutcome, Error>>,
    },
    Get {
        key: Vec<u8>,
        reply: oneshot::Sender<Result<Option<Record>, Error>>,
    },
    Remove {
        key: Vec<u8>,
        reply: oneshot::Sender<Result<PutOutcome, Error>>,
    },
    Peers(oneshot::Sender<Vec<NodeId>>),
    RoutingTable(oneshot::Sender<Vec<NodeId>>),
    Stats(oneshot::Sender<Stats>),
}

/// A node of the mesh, as the application holds it: a cheap, cloneable handle to the driver task
/// that owns the node.
///
/// Every method sends a command over a bounded queue and waits for the driver's answer. When the
/// last handle is dropped the driver leaves the mesh as [`leave`](Self::leave) does.
#[derive(Debug)]
pub struct Mesh {
    local_id: NodeId,
    commands: mpsc::Sender<Command>,
    /// The driver's events queue, held weakly: a handle is no reader (the driver hands a direct
    /// message over only into room no reader lacks), and the streams end when the driver does.
    events: broadcast::WeakSender<Event>,
}

impl Clone for Mesh {
    fn clone(&self) -> Self {
        Self {
            local_id: self.local_id,
            commands: self.commands.clone(),
            events: self.events.clone(),
        }
    }
}

impl Mesh {
    /// The builder of a mesh, with the seed's defaults (WebRTC links, `max_peers` 5, K = 20).
    pub fn builder() -> MeshBuilder {
        MeshBuilder::new()
    }

    pub(crate) fn new(
        local_id: NodeId,
        commands: mpsc::Sender<Command>,
        events: broadcast::WeakSender<Event>,
    ) -> Self {
        Self {
            local_id,
            commands,
            events,
        }
    }

    /// This node's peer id.
    pub fn local_id(&self) -> NodeId {
        self.local_id
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Join: connect to the signaling server and prove the id. Returns once joined; links to the
    /// introduced peers follow ([`Event::PeerConnected`]). Fails on a refusal, or after the
    /// builder's `join_timeout`.
    pub async fn join(&self) -> Result<(), Error> {
        self.ask(Command::Join).await?
    }

    /// Leave gracefully: tell every neighbour (they see [`Event::PeerDisconnected`] with reason
    /// `PeerLeft`), close the links, leave the signaling server, and stop the driver. Every handle
    /// fails with [`Error::Closed`] afterwards and the streams end. Leaving twice is not an error.
    pub async fn leave(&self) -> Result<(), Error> {
        match self.ask(Command::Leave).await {
            Ok(()) | Err(Error::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Send `data` to `to`, a neighbour or any other node: routed over the mesh, through the
    /// signaling server when the mesh has no route; acknowledged end to end and retried. A failure
    /// after this returns arrives as [`Event::DirectFailed`] with the same id.
    pub async fn send(&self, to: NodeId, data: impl Into<Vec<u8>>) -> Result<DirectId, Error> {
        let data = data.into();
        self.ask(|reply| Command::Send { to, data, reply }).await?
    }

    /// Broadcast `data` on `topic` to every node subscribed to it (not to this one), by gossip.
    pub async fn broadcast(
        &self,
        topic: &str,
        data: impl Into<Vec<u8>>,
    ) -> Result<gossip_core::MessageId, Error> {
        let (topic, data) = (topic.to_owned(), data.into());
        self.ask(|reply| Command::Broadcast { topic, data, reply })
            .await?
    }

    /// Subscribe to `topic`: the stream of its broadcasts. They also appear in [`events`](Self::events)
    /// as [`Event::Message`]. Dropping every subscription of a topic unsubscribes.
    pub async fn subscribe(&self, topic: &str) -> Result<Subscription, Error> {
        let owned = topic.to_owned();
        let rx = self
            .ask(|reply| Command::Subscribe {
                topic: owned,
                reply,
            })
            .await??;
        Ok(Subscription::new(topic.to_owned(), rx))
    }

    /// The stream of this node's [`Event`]s from now on. Each stream buffers the builder's
    /// `event_capacity` events; one that falls further behind gets [`Event::Lagged`].
    pub fn events(&self) -> Events {
        let rx = match self.events.upgrade() {
            Some(sender) => sender.subscribe(),
            // The driver ended: a stream that ends at once.
            None => broadcast::channel(1).1,
        };
        Events::new(rx)
    }

    /// The neighbours: peers with an up link (hello verified), in id order.
    pub async fn peers(&self) -> Result<Vec<NodeId>, Error> {
        self.ask(Command::Peers).await
    }

    /// The Kademlia routing table's contacts, bucket by bucket.
    pub async fn routing_table(&self) -> Result<Vec<NodeId>, Error> {
        self.ask(Command::RoutingTable).await
    }

    /// Look `target` up over the mesh: up to K peers closest to it, closest first (the lookup found
    /// it when the first is `target`).
    pub async fn find_node(&self, target: NodeId) -> Result<Vec<NodeId>, Error> {
        self.ask(|reply| Command::FindNode { target, reply }).await
    }

    /// Publishes `value` in the DHT under the name `key` (at most
    /// [`MAX_SALT_BYTES`](kademlia_core::MAX_SALT_BYTES) bytes), signed by this node: it is stored at
    /// the nodes closest to SHA-1 of the name, and republished by this node until
    /// [`remove`](Self::remove)d (see [`crate::dht`]). A new value replaces this node's previous one.
    /// Returns once the nodes asked answered (or the command's deadline passed, a few seconds):
    /// how many stored it.
    ///
    /// A name is first come, first served: while another node's record under it lives, the nodes
    /// that hold it refuse this one.
    ///
    /// # Errors
    /// [`Error::KeyTooLarge`], [`Error::ValueTooLarge`] (over the Kademlia config's
    /// `max_value_bytes`, 16 KiB by default), [`Error::EmptyValue`], [`Error::Busy`]; when no node
    /// stored it: [`Error::DhtRefused`] with why, or [`Error::DhtTimeout`] when no node answered (it
    /// is still republished later); [`Error::DhtRefused`] with
    /// [`StoreError::OtherPublisher`](kademlia_core::StoreError::OtherPublisher) also when some
    /// nodes stored it but one refused it because the name is another node's.
    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Vec<u8>>,
    ) -> Result<PutOutcome, Error> {
        let (key, value) = (key.as_ref().to_vec(), value.into());
        self.ask(|reply| Command::Put { key, value, reply }).await?
    }

    /// Looks up the record named `key` in the DHT (at once from this node's own records and store
    /// when it holds it). `Ok(None)` when the nodes that answered have no record under the name, or
    /// only its removal.
    ///
    /// # Errors
    /// [`Error::KeyTooLarge`], [`Error::Busy`]; [`Error::DhtTimeout`] when no node answered.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Record>, Error> {
        let key = key.as_ref().to_vec();
        self.ask(|reply| Command::Get { key, reply }).await?
    }

    /// Removes this node's record named `key` from the DHT: its removal (a signed empty value)
    /// replaces it where it is stored, and it is no longer republished. Until the removal expires
    /// (the Kademlia `record_ttl`, 1 h) the name stays this node's: other nodes cannot take it.
    ///
    /// # Errors
    /// [`Error::NotPublished`] when this node publishes nothing under `key`; [`Error::KeyTooLarge`],
    /// [`Error::Busy`]; [`Error::DhtRefused`] when no node stored the removal, [`Error::DhtTimeout`]
    /// when no node answered (a node that refused it because it holds another publisher's record
    /// under the name does not fail a removal: [`PutOutcome::refused`] says so).
    pub async fn remove(&self, key: impl AsRef<[u8]>) -> Result<PutOutcome, Error> {
        let key = key.as_ref().to_vec();
        self.ask(|reply| Command::Remove { key, reply }).await?
    }

    /// Counters of the node and of the driver.
    pub async fn stats(&self) -> Result<Stats, Error> {
        self.ask(Command::Stats).await
    }
}
