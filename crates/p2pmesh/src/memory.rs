//! An in-process network for tests and examples: meshes whose signaling is a
//! [`MemorySignalingHub`] and whose links are a [`MemoryLinkNetwork`], with no sockets at all.
//!
//! ```
//! # #[tokio::main] async fn main() -> Result<(), p2pmesh::Error> {
//! let network = p2pmesh::memory::MemoryNetwork::new();
//! let a = network.builder()?.join().await?;
//! let b = network.builder()?.join().await?;
//! # a.leave().await?; b.leave().await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use transport::memory::{MemoryLink, MemoryLinkNetwork, MemoryLinkSender, MemorySignalingHub};
use transport::{LinkConnector, LinkError, LinkEvent, PeerId, PeerLink, Role};

use crate::{Error, Keypair, Mesh, MeshBuilder};

/// Queue bound of the hub's and the links' channels.
const CAPACITY: usize = 1024;

/// A signaling hub and a link network shared by every mesh built from it.
#[derive(Debug, Clone)]
pub struct MemoryNetwork {
    hub: MemorySignalingHub,
    links: MemoryLinkNetwork,
}

impl Default for MemoryNetwork {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self {
            hub: MemorySignalingHub::new(CAPACITY),
            links: MemoryLinkNetwork::new(CAPACITY),
        }
    }

    /// An empty network whose links queue `capacity` messages each way (default 1024). A small
    /// one makes every link's backpressure common: for tests of the driver under load.
    pub fn with_link_capacity(capacity: usize) -> Self {
        Self {
            hub: MemorySignalingHub::new(CAPACITY),
            links: MemoryLinkNetwork::new(capacity),
        }
    }

    /// A builder for a new node of this network (a new key pair, already introduced to the hub:
    /// join it before long).
    pub fn builder(&self) -> Result<MeshBuilder<MemoryConnector>, Error> {
        self.builder_with(Keypair::generate()?)
    }

    /// A builder for a node of this network with `keypair`.
    pub fn builder_with(&self, keypair: Keypair) -> Result<MeshBuilder<MemoryConnector>, Error> {
        let id = crate::identity::transport_id(keypair.peer_id());
        let signaling = self
            .hub
            .join(id.clone())
            .map_err(|code| Error::Signaling(code.as_str().to_owned()))?;
        Ok(Mesh::builder()
            .keypair(keypair)
            .transport(signaling)
            .connector(self.connector(id)))
    }

    /// The link connector of peer `local` on this network (with a transport of your own).
    pub fn connector(&self, local: PeerId) -> MemoryConnector {
        MemoryConnector {
            inner: Arc::new(self.links.connector(local)),
        }
    }
}

/// A [`LinkConnector`] on a [`MemoryNetwork`].
///
/// [`MemoryLinkNetwork`] pairs two links without signals, but mesh-core creates the answering side
/// of a link only when the offer arrives; so an initiating link's first event is a stand-in offer
/// (`{"type": "offer", "memory": true}`) that the driver routes like a WebRTC offer.
#[derive(Debug, Clone)]
pub struct MemoryConnector {
    inner: Arc<transport::memory::MemoryConnector>,
}

/// A link of a [`MemoryConnector`].
#[derive(Debug)]
pub struct MemoryConnectorLink {
    link: MemoryLink,
    offer: Option<Value>,
}

#[async_trait]
impl LinkConnector for MemoryConnector {
    type Link = MemoryConnectorLink;

    async fn connect(&self, peer: PeerId, role: Role) -> Result<Self::Link, LinkError> {
        let link = self.inner.connect(peer, role).await?;
        let offer = (role == Role::Initiator).then(|| json!({"type": "offer", "memory": true}));
        Ok(MemoryConnectorLink { link, offer })
    }
}

#[async_trait]
impl PeerLink for MemoryConnectorLink {
    type Sender = MemoryLinkSender;

    fn peer(&self) -> &PeerId {
        self.link.peer()
    }

    fn sender(&self) -> MemoryLinkSender {
        self.link.sender()
    }

    async fn handle_signal(&mut self, signal: Value) -> Result<(), LinkError> {
        self.link.handle_signal(signal).await
    }

    async fn next_event(&mut self) -> Option<LinkEvent> {
        if let Some(offer) = self.offer.take() {
            return Some(LinkEvent::Signal(offer));
        }
        self.link.next_event().await
    }

    async fn close(&mut self) {
        self.link.close().await;
    }
}
