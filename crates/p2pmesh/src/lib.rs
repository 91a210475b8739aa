//! p2pmesh: peer-to-peer mesh networks over WebRTC data channels.
//!
//! Peers find each other through a signaling server, connect in a partial mesh (each keeps at most
//! `max_peers` links), broadcast to everyone by gossip (acknowledged and retried, without
//! flooding), reach any peer, neighbour or not, through routing over the mesh and a Kademlia
//! DHT, and keep small signed records by name in that DHT ([`Mesh::put`], [`Mesh::get`],
//! [`Mesh::remove`]; see [`dht`]). This crate is the one applications depend on: [`Mesh`], its [`MeshBuilder`], its
//! [`Event`]s, and the driver that runs the sans-IO [`mesh_core::Node`]. It re-exports the
//! crates below it ([`mesh_core`], [`kademlia_core`], [`gossip_core`], [`transport`],
//! [`transport_ws`], [`webrtc_adapter`]).
//!
//! # Example
//!
//! A node that joins the signaling server at `ws://127.0.0.1:8080` (run `signaling-server`, or
//! `chat-cli`, which starts one), prints what happens, and says hello on the `chat` topic to each
//! neighbour that connects:
//!
//! ```no_run
//! use futures_util::StreamExt as _;
//! use p2pmesh::{Event, Mesh};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), p2pmesh::Error> {
//!     let mesh = Mesh::builder()
//!         .signaling_url("ws://127.0.0.1:8080")
//!         .max_peers(5)
//!         .kademlia_k(20)
//!         .ice_servers([p2pmesh::webrtc_adapter::IceServer::stun("stun:stun.l.google.com:19302")])
//!         .build()?;
//!     let mut events = mesh.events();
//!     let mut chat = mesh.subscribe("chat").await?;
//!     mesh.join().await?;
//!     println!("joined as {}", mesh.local_id());
//!     loop {
//!         tokio::select! {
//!             Some(event) = events.next() => match event {
//!                 Event::PeerConnected { peer } => {
//!                     println!("connected to {peer}");
//!                     mesh.broadcast("chat", b"hello".to_vec()).await?;
//!                     mesh.send(peer, b"hello, neighbour".to_vec()).await?;
//!                 }
//!                 Event::PeerDisconnected { peer, reason } => println!("{peer} left: {reason:?}"),
//!                 Event::Message(m) if m.topic.is_none() => println!("direct from {}: {:?}", m.from, m.data),
//!                 _ => {}
//!             },
//!             Some(message) = chat.next() => println!("{} says {:?}", message.from, message.data),
//!             _ = tokio::signal::ctrl_c() => break,
//!         }
//!     }
//!     mesh.leave().await
//! }
//! ```
//!
//! The same API without sockets, on an in-process [`memory`] network (links and signaling in
//! memory): two nodes join, link up, and one's broadcast reaches the other. A broadcast goes to
//! the sender's links that are up, so Alice waits for her side of the link.
//!
//! ```
//! use futures_util::StreamExt as _;
//! use p2pmesh::{Event, memory::MemoryNetwork};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), p2pmesh::Error> {
//!     let network = MemoryNetwork::new();
//!     let alice = network.builder()?.build()?;
//!     let mut alice_events = alice.events();
//!     alice.join().await?;
//!     let bob = network.builder()?.build()?;
//!     let mut chat = bob.subscribe("chat").await?;
//!     bob.join().await?;
//!     // Wait for the link to come up.
//!     while let Some(event) = alice_events.next().await {
//!         if matches!(event, Event::PeerConnected { peer } if peer == bob.local_id()) {
//!             break;
//!         }
//!     }
//!     alice.broadcast("chat", b"hi bob".to_vec()).await?;
//!     let message = chat.next().await.expect("a message");
//!     assert_eq!((message.from, &message.data[..]), (alice.local_id(), &b"hi bob"[..]));
//!     assert_eq!(alice.peers().await?, vec![bob.local_id()]);
//!     alice.leave().await?;
//!     bob.leave().await
//! }
//! ```
//!
//! # How it runs
//!
//! [`MeshBuilder::build`] spawns one task, the driver, that owns the node by value and is the only
//! place that reads the clock (the wall clock read once, plus monotonic time since). The
//! [`Mesh`] handle talks to it over a bounded command queue, each command with a one-shot reply.
//! Each link has its own task that owns its [`transport::PeerLink`]; the signaling transport has
//! one too; they talk to the driver over bounded queues, and the driver never waits on them: a
//! frame for a link whose queue (`link_queue`, default 256 frames) is full is dropped and counted
//! in [`Stats`], and the layers above recover it (gossip and direct messages are acknowledged and
//! retried). Events and topic messages go out on bounded broadcast channels: a stream that is not
//! read lags (it gets [`Event::Lagged`], a [`Subscription`] counts what it [missed](Subscription::missed))
//! and never slows the mesh.
//!
//! Mesh frames that must cross the signaling server (before a node has links, or when the mesh
//! has no route) ride in the protocol's `signal` messages as `{"p2pmesh": "<base64>"}`.
//!
//! # In the browser
//!
//! The crate builds for `wasm32-unknown-unknown` with the same API: the driver runs on the page's
//! event loop ([`p2pmesh_rt`]), links are the browser's `RTCPeerConnection`s and signaling its
//! `WebSocket` (the same names in [`webrtc_adapter`] and [`transport_ws`]), key pairs come from
//! `crypto.getRandomValues`, and a generated key pair is kept in the tab's `sessionStorage`
//! ([`MeshBuilder::persist_identity`]). The JavaScript API is the crate `p2pmesh-js`
//! (docs/browser.md). Payloads that must say whether they are text or bytes use the
//! [`payload`] envelope.
//!
//! [`Mesh::leave`] says goodbye on every link (neighbours get [`Event::PeerDisconnected`] with
//! reason `PeerLeft`), closes the links, leaves the server and ends the driver; dropping the last
//! handle does the same.

#![deny(missing_docs)]

mod builder;
pub mod dht;
mod driver;
mod error;
mod event;
mod identity;
mod link;
pub mod memory;
mod mesh;
pub mod payload;
mod signaling;
mod stats;
pub mod wire;

pub use builder::{CATCH_UP_WINDOW, DEFAULT_IDENTITY_STORAGE_KEY, MAX_MESSAGE_BYTES, MeshBuilder};
pub use dht::{PutOutcome, Record};
pub use error::{Error, InvalidSetting};
pub use event::{Event, Events, Message, Subscription};
pub use identity::Keypair;
pub use mesh::Mesh;
pub use stats::Stats;

pub use gossip_core::MessageId;
pub use kademlia_core::{MAX_SALT_BYTES, StoreError};
pub use mesh_core::{DirectFailure, DirectId, DisconnectReason, NodeId};

pub use gossip_core;
pub use kademlia_core;
pub use mesh_core;
pub use transport;
pub use transport_ws;
pub use webrtc_adapter;
