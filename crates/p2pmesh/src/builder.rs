//! [`MeshBuilder`]: the options of a [`Mesh`], with the seed's names and defaults.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mesh_core::NodeId;
use tokio::sync::{broadcast, mpsc};
use transport::{LinkConnector, SignalingTransport};
use web_time::SystemTime;
use webrtc_adapter::IceServer;

use crate::driver::{Driver, Limits, Signaling};
use crate::{Error, InvalidSetting, Keypair, Mesh};

/// Builds a [`Mesh`]: start with [`Mesh::builder`], set options, then [`build`](Self::build) (or
/// [`join`](Self::join) to build and join at once).
///
/// The seed's options and their defaults: a key pair (generated when not given; the peer id is
/// derived from it), the signaling transport ([`signaling_url`](Self::signaling_url),
/// [`signaling_urls`](Self::signaling_urls) or any [`transport`](Self::transport)), [`max_peers`](Self::max_peers) = 5,
/// [`bootstrap_nodes`](Self::bootstrap_nodes), [`ice_servers`](Self::ice_servers) and
/// [`kademlia_k`](Self::kademlia_k) = 20. Gossip and every other limit of the node are reached
/// through [`gossip`](Self::gossip) and [`configure`](Self::configure); the facade's own queues through
/// [`event_capacity`](Self::event_capacity), [`subscription_capacity`](Self::subscription_capacity)
/// and [`link_queue`](Self::link_queue).
///
/// `C` is the [`LinkConnector`] that opens links: by default WebRTC ([`webrtc_adapter::Connector`],
/// configured by [`ice_servers`](Self::ice_servers) and [`webrtc_config`](Self::webrtc_config)); any
/// other with [`connector`](Self::connector).
pub struct MeshBuilder<C = webrtc_adapter::Connector> {
    keypair: Option<Keypair>,
    signaling: Option<Signaling>,
    room: Option<String>,
    connector: Option<C>,
    default_connector: Option<fn(webrtc_adapter::Config) -> C>,
    webrtc: webrtc_adapter::Config,
    config: mesh_core::Config,
    bootstrap: Vec<NodeId>,
    limits: Limits,
    join_timeout: Duration,
    seed: Option<u64>,
    start_time: Option<SystemTime>,
    identity_storage: Option<String>,
}

/// The `sessionStorage` key under which a browser mesh keeps its secret key by default (see
/// [`MeshBuilder::persist_identity`]).
pub const DEFAULT_IDENTITY_STORAGE_KEY: &str = "p2pmesh:secret-key";

/// How long after a broadcast a node that links to this one still hears of it
/// (gossip-core's `Config::catch_up_window`; decision 21 in docs/decisions.md).
pub const CATCH_UP_WINDOW: Duration = Duration::from_secs(5);

/// The largest message `broadcast` and `send` take by default: 1 MiB of application bytes
/// (chunked on the wire under the data channel's 64 KiB limit). Larger ones are refused with an
/// error; [`MeshBuilder::configure`] changes the bound.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Room for the envelope around an application's bytes in a frame: a gossip message's id, origin,
/// topic (at most 256 bytes), key and signature, or a routed message's ids, path and signature.
const ENVELOPE_BYTES: usize = 4 * 1024;

/// mesh-core's defaults, with the catch-up of new links on (real links are replaced most while a
/// mesh forms, which is when applications greet) and [`MAX_MESSAGE_BYTES`] for broadcasts and
/// direct messages alike (gossip-core alone would take 64 KiB, and mesh-core's 1 MiB frame would
/// leave less than 1 MiB for the application).
fn default_config() -> mesh_core::Config {
    let mut config = mesh_core::Config::default();
    config.gossip.catch_up_window = CATCH_UP_WINDOW;
    config.gossip.max_payload_len = MAX_MESSAGE_BYTES;
    config.max_message_bytes = MAX_MESSAGE_BYTES + ENVELOPE_BYTES;
    config.max_reassembly_bytes = 2 * config.max_message_bytes;
    config
}

impl MeshBuilder<webrtc_adapter::Connector> {
    pub(crate) fn new() -> Self {
        Self {
            keypair: None,
            signaling: None,
            room: None,
            connector: None,
            default_connector: Some(webrtc_adapter::Connector::new),
            webrtc: webrtc_adapter::Config::default(),
            config: default_config(),
            bootstrap: Vec::new(),
            limits: Limits::default(),
            join_timeout: Duration::from_secs(30),
            seed: None,
            start_time: None,
            identity_storage: Some(DEFAULT_IDENTITY_STORAGE_KEY.to_owned()),
        }
    }
}

impl<C> MeshBuilder<C>
where
    C: LinkConnector + 'static,
    C::Link: 'static,
{
    /// The node's identity (default: a new key pair from OS randomness; in the browser the key
    /// pair kept by [`persist_identity`](Self::persist_identity)). An explicit key pair wins over a
    /// kept one, and is not stored.
    pub fn keypair(mut self, keypair: Keypair) -> Self {
        self.keypair = Some(keypair);
        self
    }

    /// The node's identity as a 32-byte ed25519 secret key.
    pub fn secret_key(self, secret: [u8; 32]) -> Self {
        self.keypair(Keypair::from_secret(secret))
    }

    /// In the browser, whether a mesh built without [`keypair`](Self::keypair) keeps its
    /// generated key pair in the page's `sessionStorage` (under
    /// [`DEFAULT_IDENTITY_STORAGE_KEY`], or [`identity_storage_key`](Self::identity_storage_key)) and
    /// takes it back from there: a reload of the tab keeps its peer id, while each tab has its own
    /// (with `localStorage` two tabs would share one id, which the signaling server refuses).
    /// Default `true`. The secret then sits in the tab's storage, readable by the page's scripts.
    /// Natively this setting has no effect: store [`Keypair::secret`] yourself.
    pub fn persist_identity(mut self, persist: bool) -> Self {
        self.identity_storage = persist.then(|| {
            self.identity_storage
                .take()
                .unwrap_or_else(|| DEFAULT_IDENTITY_STORAGE_KEY.to_owned())
        });
        self
    }

    /// In the browser, the `sessionStorage` key of the kept key pair (default
    /// [`DEFAULT_IDENTITY_STORAGE_KEY`]; see [`persist_identity`](Self::persist_identity), which
    /// this turns on). Two meshes in one tab need two keys.
    pub fn identity_storage_key(mut self, key: impl Into<String>) -> Self {
        self.identity_storage = Some(key.into());
        self
    }

    /// Join the signaling server at `url` (e.g. `ws://127.0.0.1:8080`) over WebSocket
    /// ([`transport_ws::WsSignaling`]), proving the id with the key pair; reconnects when lost.
    /// Replaces the servers set so far; [`signaling_urls`](Self::signaling_urls) gives several.
    pub fn signaling_url(mut self, url: impl Into<String>) -> Self {
        self.signaling = Some(Signaling::Urls(vec![url.into()]));
        self
    }

    /// Join one of the signaling servers at `urls`, servers of one cluster that share rooms (e.g.
    /// `signaling-server --redis ...`), tried in this order: the first at the start; when the
    /// connection to one is lost, the next at once, and so on round the list, with backoff only
    /// after every server failed in turn (see [`transport_ws`]'s "Several servers"). Links stay up
    /// meanwhile and keep carrying what the mesh routes over them, signaling between peers
    /// included; the mesh reports [`Event::ServerDisconnected`](crate::Event::ServerDisconnected)
    /// and, once joined to another server, [`Event::ServerReconnected`](crate::Event::ServerReconnected).
    /// Replaces the servers set so far; [`build`](Self::build) refuses an empty list.
    pub fn signaling_urls(mut self, urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.signaling = Some(Signaling::Urls(urls.into_iter().map(Into::into).collect()));
        self
    }

    /// Signal through `transport` instead (it must hold this node's id, see [`Keypair::peer_id`]).
    pub fn transport(mut self, transport: impl SignalingTransport + 'static) -> Self {
        self.signaling = Some(Signaling::Transport(Box::new(transport)));
        self
    }

    /// The room to join on the signaling server (default: the server's default room). Only for
    /// [`signaling_url`](Self::signaling_url) and [`signaling_urls`](Self::signaling_urls).
    pub fn room(mut self, room: impl Into<String>) -> Self {
        self.room = Some(room.into());
        self
    }

    /// Links kept at most (default 5; at least 1, or [`build`](Self::build) fails). Also caps the
    /// random long links at this number.
    pub fn max_peers(mut self, max_peers: usize) -> Self {
        self.config.max_peers = max_peers;
        self.config.random_links = self.config.random_links.min(max_peers);
        self
    }

    /// Kademlia's K: contacts per bucket, and contacts a lookup answer carries (default 20; at
    /// least 1, or [`build`](Self::build) fails).
    pub fn kademlia_k(mut self, k: usize) -> Self {
        self.config.kademlia.k = k;
        self.config.lookup_k = k;
        self
    }

    /// Peers to start from besides the signaling server's introductions (the seed's
    /// `bootstrapNodes`); reached through the server until links exist.
    pub fn bootstrap_nodes(mut self, nodes: impl IntoIterator<Item = NodeId>) -> Self {
        self.bootstrap = nodes.into_iter().collect();
        self
    }

    /// STUN and TURN servers for the default WebRTC connector (default: none, host candidates
    /// only). Ignored with a [`connector`](Self::connector) of your own.
    pub fn ice_servers(mut self, servers: impl IntoIterator<Item = IceServer>) -> Self {
        self.webrtc.ice_servers = servers.into_iter().collect();
        self
    }

    /// The whole configuration of the default WebRTC connector (e.g.
    /// [`webrtc_adapter::Config::loopback`] for peers on one machine); keeps the ICE servers set
    /// so far when `config` has none.
    pub fn webrtc_config(mut self, mut config: webrtc_adapter::Config) -> Self {
        if config.ice_servers.is_empty() {
            config.ice_servers = std::mem::take(&mut self.webrtc.ice_servers);
        }
        self.webrtc = config;
        self
    }

    /// Open links with `connector` instead of WebRTC (e.g. an in-memory network in tests, see
    /// [`memory`](crate::memory)).
    pub fn connector<D>(self, connector: D) -> MeshBuilder<D>
    where
        D: LinkConnector + 'static,
        D::Link: 'static,
    {
        MeshBuilder {
            keypair: self.keypair,
            signaling: self.signaling,
            room: self.room,
            connector: Some(connector),
            default_connector: None,
            webrtc: self.webrtc,
            config: self.config,
            bootstrap: self.bootstrap,
            limits: self.limits,
            join_timeout: self.join_timeout,
            seed: self.seed,
            start_time: self.start_time,
            identity_storage: self.identity_storage,
        }
    }

    /// Whether every broadcast this node receives arrives as [`Event::Message`](crate::Event::Message),
    /// whatever its topic (default `false`: only the topics it [subscribed](Mesh::subscribe) to).
    /// The JavaScript library's `message` event carried every broadcast; its API turns this on.
    /// Every node relays every topic either way. Sets [`gossip_core::Config::deliver_all_topics`]
    /// (a later [`gossip`](Self::gossip) replaces it).
    pub fn receive_all_topics(mut self, all: bool) -> Self {
        self.config.gossip.deliver_all_topics = all;
        self
    }

    /// The gossip settings (hop limit, retries, caches, signatures; see [`gossip_core::Config`]).
    pub fn gossip(mut self, config: gossip_core::Config) -> Self {
        self.config.gossip = config;
        self
    }

    /// Change any setting of the node ([`mesh_core::Config`]: link, framing, routing, lookup and
    /// queue limits; its Kademlia and gossip settings).
    pub fn configure(mut self, f: impl FnOnce(&mut mesh_core::Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// Events buffered for each [`Mesh::events`] stream before a slow one lags (default 1024; at
    /// least 1, or [`build`](Self::build) fails).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.limits.events = capacity;
        self
    }

    /// Messages buffered for each [`Mesh::subscribe`] stream before a slow one lags (default 1024;
    /// at least 1, or [`build`](Self::build) fails).
    pub fn subscription_capacity(mut self, capacity: usize) -> Self {
        self.limits.subscription = capacity;
        self
    }

    /// Frames queued for each link before further frames for it are dropped (default 256; at
    /// least 1, or [`build`](Self::build) fails). The reliability layers above (gossip acks and
    /// retries, direct-message retries) resend what a drop loses.
    pub fn link_queue(mut self, frames: usize) -> Self {
        self.limits.link_queue = frames;
        self
    }

    /// How long [`Mesh::join`] waits for the signaling server (default 30 s).
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// The seed of the node's random choices (default: from OS randomness). The same seed and the
    /// same inputs give the same choices; useful to reproduce a run.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The wall-clock time the node's clock starts from (default: the system clock when the mesh is
    /// built). The node's time is this plus the time tokio's clock has advanced since, so a test on
    /// tokio's paused clock with a fixed start sees the same times on every run.
    pub fn start_time(mut self, start: SystemTime) -> Self {
        self.start_time = Some(start);
        self
    }

    /// The peer id this builder's mesh will have, generating the key pair now if none was given.
    pub fn peer_id(&mut self) -> Result<NodeId, Error> {
        Ok(self.identity()?.peer_id())
    }

    /// The key pair this builder's mesh will have: the one given, else (in the browser) the one
    /// kept in the tab's storage, else a new one, generated now (and kept, see
    /// [`persist_identity`](Self::persist_identity)).
    pub fn identity(&mut self) -> Result<Keypair, Error> {
        self.keypair_or_generate()
    }

    fn keypair_or_generate(&mut self) -> Result<Keypair, Error> {
        let keypair = match self.keypair.take() {
            Some(keypair) => keypair,
            None => self.kept_or_new_keypair()?,
        };
        self.keypair = Some(keypair.clone());
        Ok(keypair)
    }

    /// The key pair kept in the tab's storage, or a new one (kept there from now on).
    #[cfg(target_arch = "wasm32")]
    fn kept_or_new_keypair(&self) -> Result<Keypair, Error> {
        let Some(key) = &self.identity_storage else {
            return Keypair::generate();
        };
        if let Some(kept) = crate::identity::session::load(key) {
            return Ok(kept);
        }
        let keypair = Keypair::generate()?;
        crate::identity::session::store(key, &keypair);
        Ok(keypair)
    }

    /// A new key pair (natively nothing is kept: see [`persist_identity`](Self::persist_identity)).
    #[cfg(not(target_arch = "wasm32"))]
    fn kept_or_new_keypair(&self) -> Result<Keypair, Error> {
        Keypair::generate()
    }

    /// Start the mesh's driver task (natively in the current tokio runtime, in the browser on its
    /// event loop) without joining yet: subscribe
    /// and take [`Mesh::events`] first, then [`Mesh::join`].
    ///
    /// Fails, without panicking, when a setting cannot work ([`Error::InvalidConfig`] names a node
    /// setting, [`Error::InvalidSetting`] a queue bound),
    /// outside a tokio runtime (natively), without a signaling transport, or with a transport that holds
    /// another id.
    pub fn build(mut self) -> Result<Mesh, Error> {
        self.config.validate()?;
        self.limits.validate()?;
        #[cfg(not(target_arch = "wasm32"))]
        tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let keypair = self.keypair_or_generate()?;
        let local_id = keypair.peer_id();
        let signaling = self.signaling.take().ok_or(Error::NoTransport)?;
        if matches!(&signaling, Signaling::Urls(urls) if urls.is_empty()) {
            return Err(InvalidSetting::new("signaling_urls", "at least one URL").into());
        }
        if let Signaling::Transport(t) = &signaling
            && crate::identity::node_id(t.local_id()) != Some(local_id)
        {
            return Err(Error::IdMismatch {
                mesh: local_id.to_string(),
                transport: t.local_id().to_string(),
            });
        }
        let connector = match (self.connector, self.default_connector) {
            (Some(c), _) => c,
            (None, Some(make)) => make(self.webrtc),
            (None, None) => return Err(Error::NoConnector),
        };
        let seed = match self.seed {
            Some(seed) => seed,
            None => getrandom::u64().map_err(|e| Error::Entropy(e.to_string()))?,
        };
        // The driver acknowledges a direct message only once it is in the events queue.
        let mut config = self.config;
        config.confirm_direct = true;
        let node = mesh_core::Node::new(keypair.secret(), config, seed);
        let (commands_tx, commands) = mpsc::channel(self.limits.commands);
        let (events_tx, _) = broadcast::channel(self.limits.events);
        let events_weak = events_tx.downgrade();
        let driver = Driver::new(crate::driver::Parts {
            node,
            keypair,
            connector: Arc::new(connector),
            signaling,
            room: self.room,
            bootstrap: self.bootstrap,
            commands,
            events: events_tx,
            limits: self.limits,
            join_timeout: self.join_timeout,
            start_time: self.start_time,
        });
        drop(p2pmesh_rt::spawn(driver.run()));
        Ok(Mesh::new(local_id, commands_tx, events_weak))
    }

    /// [`build`](Self::build), then [`Mesh::join`].
    pub async fn join(self) -> Result<Mesh, Error> {
        let mesh = self.build()?;
        mesh.join().await?;
        Ok(mesh)
    }
}

impl<C> fmt::Debug for MeshBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshBuilder")
            .field("keypair", &self.keypair)
            .field("signaling", &self.signaling)
            .field("room", &self.room)
            .field("config", &self.config)
            .field("bootstrap", &self.bootstrap)
            .field("limits", &self.limits)
            .field("identity_storage", &self.identity_storage)
            .finish_non_exhaustive()
    }
}
