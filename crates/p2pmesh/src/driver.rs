//! The driver: one task ([`p2pmesh_rt::spawn`]: tokio natively, the browser's event loop in
//! wasm32) that owns the [`mesh_core::Node`] by value and is the only place that reads the clock.
//!
//! It waits on four inputs at once: commands from the [`Mesh`](crate::Mesh) handles, events from
//! the signaling task, reports from the link tasks (one bounded queue, each report tagged with its
//! link's id), and the node's next timeout. After every input it drains `poll_output` and carries
//! out each output without waiting on anyone: frames go to the link tasks with `try_send` (a full
//! link queue drops the frame and counts it; gossip and direct messages are acknowledged and
//! retried above), server messages likewise to the signaling task, events to broadcast channels
//! (a slow subscriber lags, it never slows the driver).
//!
//! A direct message is acknowledged only if the application will get it: the node holds its
//! acknowledgement (`confirm_direct` in the node's config) until the driver reports whether it put
//! the message in the events queue, which it does only while the queue has room (and a reader). So
//! that nothing overwrites it there, the driver never lets the events queue overflow: an event that
//! finds it full is dropped and counted, and the next one that fits is preceded by
//! [`Event::Lagged`] with how many were lost. The queue is as slow as its slowest reader; a sender
//! whose message found it full sees no ack, retries, and at last gets `Event::DirectFailed`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kademlia_core::StoreError;
use mesh_core::{
    Event as NodeEvent, Instant, MessageRef, Node, NodeId, Output, QueryId, ServerInput,
};
use p2pmesh_rt::{Task, TaskSet, sleep_until_opt};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info, warn};
use transport::{
    ClientMessage, ErrorCode, LinkConnector, LinkEvent, Role, SignalingTransport, TransportEvent,
};
use web_time::{SystemTime, UNIX_EPOCH};

use crate::dht::{PutOutcome, Record};
use crate::event::{Event, Message};
use crate::identity::{node_id, transport_id};
use crate::link::{self, LinkQueues, LinkReport};
use crate::mesh::Command;
use crate::{Error, InvalidSetting, Keypair, Stats, wire};

/// The facade's queue bounds (see the builder's setters).
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Commands from the handles waiting for the driver.
    pub(crate) commands: usize,
    /// Events buffered per [`Mesh::events`](crate::Mesh::events) stream.
    pub(crate) events: usize,
    /// Messages buffered per subscription stream.
    pub(crate) subscription: usize,
    /// Commands (frames, signals) queued per link task.
    pub(crate) link_queue: usize,
    /// Reports from all link tasks waiting for the driver.
    pub(crate) link_reports: usize,
    /// Messages to and events from the signaling task.
    pub(crate) signaling_queue: usize,
}

impl Limits {
    /// Every bound must be at least 1 (a zero-sized tokio channel panics).
    pub(crate) fn validate(&self) -> Result<(), InvalidSetting> {
        for (setting, value) in [
            ("event_capacity", self.events),
            ("subscription_capacity", self.subscription),
            ("link_queue", self.link_queue),
            ("commands", self.commands),
            ("link_reports", self.link_reports),
            ("signaling_queue", self.signaling_queue),
        ] {
            if value == 0 {
                return Err(InvalidSetting::new(setting, "must be at least 1"));
            }
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            commands: 64,
            events: 1024,
            subscription: 1024,
            link_queue: 256,
            link_reports: 1024,
            signaling_queue: 256,
        }
    }
}

/// Where signaling goes.
pub(crate) enum Signaling {
    /// The URLs of WebSocket signaling servers of one cluster, tried in this order (at least one).
    Urls(Vec<String>),
    /// A transport given by the application.
    Transport(Box<dyn SignalingTransport>),
}

impl fmt::Debug for Signaling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Urls(urls) => write!(f, "Urls({urls:?})"),
            Self::Transport(t) => write!(f, "Transport({})", t.local_id()),
        }
    }
}

/// The clock: wall-clock time read once at start (or given to the builder) plus the runtime's
/// monotonic time elapsed since ([`p2pmesh_rt::Instant`]), so that it never goes back and still
/// agrees with other nodes' clocks (gossip checks message ages). On tokio's paused clock with a
/// given start it is fully deterministic. The wall clock is `web_time`'s: the system clock natively,
/// `Date.now()` in the browser (where `std::time::SystemTime::now` panics).
struct Clock {
    wall_start: Duration,
    mono_start: p2pmesh_rt::Instant,
}

impl Clock {
    fn new(start: Option<SystemTime>) -> Self {
        let start = start.unwrap_or_else(SystemTime::now);
        Self {
            wall_start: start.duration_since(UNIX_EPOCH).unwrap_or_default(),
            mono_start: p2pmesh_rt::Instant::now(),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_duration(self.wall_start + self.mono_start.elapsed())
    }

    fn deadline(&self, at: Instant) -> p2pmesh_rt::Instant {
        self.mono_start + at.saturating_duration_since(Instant::from_duration(self.wall_start))
    }
}

struct LinkHandle {
    id: u64,
    queues: LinkQueues,
}

enum SignalingState {
    /// Not joined yet: what to connect to.
    Idle(Signaling),
    /// The signaling task runs.
    Running {
        messages: mpsc::Sender<ClientMessage>,
        task: Task,
    },
    /// Closed (left, or the transport closed for good).
    Closed,
}

/// What the builder hands the driver.
pub(crate) struct Parts<C> {
    pub(crate) node: Node,
    pub(crate) keypair: Keypair,
    pub(crate) connector: Arc<C>,
    pub(crate) signaling: Signaling,
    pub(crate) room: Option<String>,
    pub(crate) bootstrap: Vec<NodeId>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) limits: Limits,
    pub(crate) join_timeout: Duration,
    /// The wall-clock start of the node's clock (`None`: now).
    pub(crate) start_time: Option<SystemTime>,
}

pub(crate) struct Driver<C> {
    node: Node,
    keypair: Keypair,
    clock: Clock,
    connector: Arc<C>,
    signaling: SignalingState,
    room: Option<String>,
    bootstrap: Vec<NodeId>,
    commands: mpsc::Receiver<Command>,
    server_events: mpsc::Receiver<TransportEvent>,
    server_events_tx: Option<mpsc::Sender<TransportEvent>>,
    links: HashMap<NodeId, LinkHandle>,
    next_link_id: u64,
    link_tasks: TaskSet,
    reports: mpsc::Receiver<LinkReport>,
    reports_tx: mpsc::Sender<LinkReport>,
    events: broadcast::Sender<Event>,
    topics: HashMap<String, broadcast::Sender<Message>>,
    lookups: HashMap<QueryId, oneshot::Sender<Vec<NodeId>>>,
    /// Puts (`false`) and removes (`true`) waiting for their `PutFinished`.
    puts: HashMap<QueryId, (bool, oneshot::Sender<Result<PutOutcome, Error>>)>,
    /// Gets waiting for their `GetFinished`.
    gets: HashMap<QueryId, oneshot::Sender<Result<Option<Record>, Error>>>,
    pending_join: Option<(oneshot::Sender<Result<(), Error>>, p2pmesh_rt::Instant)>,
    limits: Limits,
    join_timeout: Duration,
    stats: Stats,
    /// Events dropped since the events queue was last not full, told to the readers as
    /// [`Event::Lagged`] before the next event that fits.
    events_missed: u64,
}

impl<C> Driver<C>
where
    C: LinkConnector + 'static,
    C::Link: 'static,
{
    pub(crate) fn new(parts: Parts<C>) -> Self {
        let (reports_tx, reports) = mpsc::channel(parts.limits.link_reports);
        let (server_events_tx, server_events) = mpsc::channel(parts.limits.signaling_queue);
        Self {
            node: parts.node,
            keypair: parts.keypair,
            clock: Clock::new(parts.start_time),
            connector: parts.connector,
            signaling: SignalingState::Idle(parts.signaling),
            room: parts.room,
            bootstrap: parts.bootstrap,
            commands: parts.commands,
            server_events,
            server_events_tx: Some(server_events_tx),
            links: HashMap::new(),
            next_link_id: 0,
            link_tasks: TaskSet::new(),
            reports,
            reports_tx,
            events: parts.events,
            topics: HashMap::new(),
            lookups: HashMap::new(),
            puts: HashMap::new(),
            gets: HashMap::new(),
            pending_join: None,
            limits: parts.limits,
            join_timeout: parts.join_timeout,
            stats: Stats::default(),
            events_missed: 0,
        }
    }

    pub(crate) async fn run(mut self) {
        let leave_reply = loop {
            let timeout = self.node.poll_timeout().map(|at| self.clock.deadline(at));
            let join_deadline = self.pending_join.as_ref().map(|(_, at)| *at);
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Leave(reply)) => break Some(reply),
                    Some(command) => self.handle_command(command),
                    // Every handle is gone: leave as `leave` does.
                    None => break None,
                },
                Some(event) = self.server_events.recv() => self.handle_server_event(event),
                Some(report) = self.reports.recv() => self.handle_link_report(report),
                () = sleep_until_opt(timeout) => {
                    let now = self.clock.now();
                    self.node.handle_timeout(now);
                }
                () = sleep_until_opt(join_deadline) => {
                    if let Some((reply, _)) = self.pending_join.take() {
                        let _ = reply.send(Err(Error::JoinTimeout(self.join_timeout)));
                    }
                }
            }
            self.drain();
        };
        self.shutdown().await;
        if let Some(reply) = leave_reply {
            let _ = reply.send(());
        }
    }

    /// Leave: the node says goodbye on every link and closes them; the link tasks flush and close;
    /// the signaling task leaves the server.
    async fn shutdown(&mut self) {
        let now = self.clock.now();
        self.node.leave(now);
        self.drain();
        // Dropping a link's sender makes its task flush the queue and close the link.
        self.links.clear();
        if let Some((reply, _)) = self.pending_join.take() {
            let _ = reply.send(Err(Error::Closed));
        }
        if let SignalingState::Running { messages, mut task } =
            std::mem::replace(&mut self.signaling, SignalingState::Closed)
        {
            drop(messages);
            let grace = crate::signaling::CLOSE_GRACE + Duration::from_secs(1);
            if p2pmesh_rt::timeout(grace, task.join()).await.is_err() {
                task.abort();
            }
        }
        let (link_tasks, reports) = (&mut self.link_tasks, &mut self.reports);
        let tasks = link_tasks.join_all();
        // Link tasks still reporting would wait on the full report queue: keep draining it.
        let reports = async { while reports.recv().await.is_some() {} };
        tokio::select! {
            () = tasks => {}
            () = reports => {}
            () = p2pmesh_rt::sleep(Duration::from_secs(5)) => {
                warn!("links still closing after 5 s; aborting them");
            }
        }
        self.link_tasks.abort_all();
        info!(id = %self.node.local_id(), "left the mesh");
    }

    fn handle_command(&mut self, command: Command) {
        let now = self.clock.now();
        match command {
            Command::Join(reply) => self.start_join(reply),
            Command::Leave(_) => {} // handled by the loop
            Command::Send { to, data, reply } => {
                let _ = reply.send(self.node.send(now, to, data).map_err(Error::from));
            }
            Command::Broadcast { topic, data, reply } => {
                let _ = reply.send(self.node.broadcast(now, &topic, data).map_err(Error::from));
            }
            Command::Subscribe { topic, reply } => {
                let result = match self.topics.get(&topic) {
                    Some(sender) => Ok(sender.subscribe()),
                    None => match self.node.subscribe(&topic) {
                        Ok(()) => {
                            let (sender, rx) = broadcast::channel(self.limits.subscription);
                            self.topics.insert(topic, sender);
                            Ok(rx)
                        }
                        Err(e) => Err(Error::from(e)),
                    },
                };
                let _ = reply.send(result);
            }
            Command::FindNode { target, reply } => {
                let id = self.node.find_node(now, target);
                self.lookups.retain(|_, r| !r.is_closed());
                self.lookups.insert(id, reply);
            }
            Command::Put { key, value, reply } => match self.node.put(now, &key, value) {
                Ok(id) => {
                    self.puts.retain(|_, (_, r)| !r.is_closed());
                    self.puts.insert(id, (false, reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(Error::from_dht(e, &key)));
                }
            },
            Command::Remove { key, reply } => match self.node.remove(now, &key) {
                Ok(id) => {
                    self.puts.retain(|_, (_, r)| !r.is_closed());
                    self.puts.insert(id, (true, reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(Error::from_dht(e, &key)));
                }
            },
            Command::Get { key, reply } => match self.node.get(now, &key) {
                // A record this node holds is found at once: its event is drained after this.
                Ok(id) => {
                    self.gets.retain(|_, r| !r.is_closed());
                    self.gets.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(Error::from_dht(e, &key)));
                }
            },
            Command::Peers(reply) => {
                let _ = reply.send(self.node.links());
            }
            Command::RoutingTable(reply) => {
                let ids = self.node.routing_table().iter().map(|e| e.id()).collect();
                let _ = reply.send(ids);
            }
            Command::Stats(reply) => {
                let mut stats = self.stats.clone();
                stats.node = self.node.stats().clone();
                stats.links = self.links.len();
                let _ = reply.send(stats);
            }
        }
    }

    fn start_join(&mut self, reply: oneshot::Sender<Result<(), Error>>) {
        let signaling = match std::mem::replace(&mut self.signaling, SignalingState::Closed) {
            SignalingState::Idle(signaling) => signaling,
            other => {
                self.signaling = other;
                let _ = reply.send(Err(Error::AlreadyJoined));
                return;
            }
        };
        let Some(events) = self.server_events_tx.take() else {
            let _ = reply.send(Err(Error::AlreadyJoined));
            return;
        };
        let transport: Box<dyn SignalingTransport> = match signaling {
            Signaling::Transport(t) => t,
            Signaling::Urls(urls) => {
                let identity = transport_ws::Identity::Keypair(self.keypair.signing_key());
                let mut config = transport_ws::Config::with_servers(urls, identity);
                config.room = self.room.clone();
                Box::new(transport_ws::WsSignaling::connect(config))
            }
        };
        let (messages, messages_rx) = mpsc::channel(self.limits.signaling_queue);
        let task = p2pmesh_rt::spawn(crate::signaling::run(transport, messages_rx, events));
        self.signaling = SignalingState::Running { messages, task };
        let deadline = p2pmesh_rt::Instant::now() + self.join_timeout;
        self.pending_join = Some((reply, deadline));
    }

    fn handle_server_event(&mut self, event: TransportEvent) {
        let now = self.clock.now();
        match event {
            TransportEvent::Open { peer_id, room } => {
                info!(id = %peer_id, %room, "joined the signaling server");
                self.node.join(now);
                if !self.bootstrap.is_empty() {
                    let peers = self.bootstrap.clone();
                    self.node
                        .handle_server(now, ServerInput::BootstrapPeers(peers));
                }
                if let Some((reply, _)) = self.pending_join.take() {
                    let _ = reply.send(Ok(()));
                }
            }
            TransportEvent::Close {
                reason,
                reconnecting,
            } => {
                if !reconnecting && let Some((reply, _)) = self.pending_join.take() {
                    let _ = reply.send(Err(Error::Signaling(reason.clone())));
                }
                self.emit(Event::ServerDisconnected {
                    reason,
                    reconnecting,
                });
            }
            TransportEvent::Reconnected { .. } => {
                // The server may have restarted: it introduces us again (bootstrap_peers), and
                // the node, still joined, takes the introductions as they come.
                self.emit(Event::ServerReconnected);
            }
            TransportEvent::Error {
                code,
                message,
                peer_id,
            } => {
                debug!(?code, %message, ?peer_id, "signaling server error");
                // A signal to a peer the server does not know: it left. The node stops proposing
                // it, and an attempt to link to it frees its slot at once.
                if code == Some(ErrorCode::UnknownPeer)
                    && let Some(peer) = peer_id.as_ref().and_then(node_id)
                {
                    self.node.handle_server(now, ServerInput::PeerLeft(peer));
                }
            }
            TransportEvent::Signal { from, signal } => {
                let (Some(from), Some(payload)) = (node_id(&from), wire::decode_frame(&signal))
                else {
                    self.stats.foreign_signals += 1;
                    return;
                };
                self.node
                    .handle_server(now, ServerInput::Relayed { from, payload });
            }
            TransportEvent::ConnectRequest { peer } => {
                if let Some(peer) = node_id(&peer) {
                    self.node.handle_server(now, ServerInput::PeerJoined(peer));
                }
            }
            TransportEvent::BootstrapPeers { peers } => {
                let peers = peers.iter().filter_map(node_id).collect();
                self.node
                    .handle_server(now, ServerInput::BootstrapPeers(peers));
            }
            TransportEvent::PeerLeft { peer } => {
                if let Some(peer) = node_id(&peer) {
                    self.node.handle_server(now, ServerInput::PeerLeft(peer));
                }
            }
            // mesh-core says these in its own frames; old clients' forms are ignored.
            TransportEvent::ConnectionRejected { .. }
            | TransportEvent::SignalRejected { .. }
            | TransportEvent::KademliaRpc { .. } => self.stats.foreign_signals += 1,
        }
    }

    fn handle_link_report(&mut self, report: LinkReport) {
        let LinkReport { id, peer, event } = report;
        if self.links.get(&peer).is_none_or(|l| l.id != id) {
            return; // A late report of a link that was closed or replaced.
        }
        let now = self.clock.now();
        match event {
            LinkEvent::Signal(signal) => match serde_json::to_vec(&signal) {
                Ok(bytes) => self.node.send_signal(now, peer, bytes),
                Err(err) => debug!(%err, "unencodable signal"),
            },
            LinkEvent::Open {
                local_fingerprint,
                remote_fingerprint,
            } => self.node.handle_link_open(
                now,
                peer,
                local_fingerprint.into_bytes(),
                remote_fingerprint.into_bytes(),
            ),
            LinkEvent::Message(bytes) => self.node.handle_message(now, peer, &bytes),
            LinkEvent::Closed(reason) => {
                debug!(%peer, %reason, "link closed");
                self.links.remove(&peer);
                self.node.handle_link_closed(now, peer);
            }
        }
    }

    /// Carries out every output the node has.
    fn drain(&mut self) {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Transmit { link, bytes } => {
                    let sent = self
                        .links
                        .get(&link)
                        .map(|l| l.queues.frames.try_send(bytes));
                    match sent {
                        Some(Ok(())) => {}
                        Some(Err(mpsc::error::TrySendError::Full(_))) => {
                            self.stats.frames_dropped_full += 1;
                            debug!(peer = %link, "link queue full: frame dropped");
                        }
                        Some(Err(mpsc::error::TrySendError::Closed(_))) | None => {
                            self.stats.frames_dropped_no_link += 1;
                        }
                    }
                }
                Output::Connect { peer, initiator } => self.open_link(peer, initiator),
                Output::Disconnect { peer, reason } => {
                    debug!(%peer, ?reason, "closing link");
                    // The task flushes what is queued, then closes.
                    self.links.remove(&peer);
                }
                Output::Signal { to, payload } => {
                    let message = ClientMessage::Signal {
                        to: transport_id(to),
                        from: None,
                        signal: wire::encode_frame(&payload),
                    };
                    let sent = match &self.signaling {
                        SignalingState::Running { messages, .. } => {
                            messages.try_send(message).is_ok()
                        }
                        _ => false,
                    };
                    if !sent {
                        self.stats.signals_dropped += 1;
                    }
                }
                Output::Event(event) => self.handle_node_event(event),
                other => debug!(?other, "node output not handled by this driver"),
            }
        }
    }

    fn open_link(&mut self, peer: NodeId, initiator: bool) {
        self.next_link_id += 1;
        let id = self.next_link_id;
        let (queues, inbox) = link::queues(self.limits.link_queue);
        let role = if initiator {
            Role::Initiator
        } else {
            Role::Responder
        };
        self.link_tasks.spawn(link::run(
            self.connector.clone(),
            id,
            peer,
            role,
            inbox,
            self.reports_tx.clone(),
        ));
        // A link being replaced is closed by dropping its sender.
        self.links.insert(peer, LinkHandle { id, queues });
    }

    fn handle_node_event(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::Signal { from, payload } => {
                let Some(link) = self.links.get(&from) else {
                    self.stats.signals_dropped += 1;
                    return;
                };
                match serde_json::from_slice(&payload) {
                    Ok(signal) => {
                        if link.queues.signals.try_send(signal).is_err() {
                            self.stats.signals_dropped += 1;
                        }
                    }
                    Err(_) => self.stats.signals_dropped += 1,
                }
            }
            NodeEvent::PeerConnected { peer } => self.emit(Event::PeerConnected { peer }),
            NodeEvent::PeerDisconnected { peer, reason } => {
                self.emit(Event::PeerDisconnected { peer, reason });
            }
            NodeEvent::PeerTimedOut { peer } => self.emit(Event::PeerTimedOut { peer }),
            NodeEvent::Message {
                from,
                topic: None,
                data,
                hops,
                id: MessageRef::Direct(id),
                ..
            } => {
                // Handed over only into room in the events queue; acknowledged only then.
                let delivered = self.events_room() > 0;
                if delivered {
                    self.emit(Event::Message(Message {
                        from,
                        topic: None,
                        data: data.into(),
                        hops,
                    }));
                } else {
                    self.stats.direct_refused += 1;
                }
                let now = self.clock.now();
                self.node.confirm_direct(now, from, id, delivered);
            }
            NodeEvent::Message {
                from,
                topic,
                data,
                hops,
                ..
            } => {
                let message = Message {
                    from,
                    topic,
                    data: data.into(),
                    hops,
                };
                if let Some(topic) = &message.topic
                    && let Some(sender) = self.topics.get(topic)
                {
                    if sender.receiver_count() == 0 {
                        // Every subscription was dropped: unsubscribe.
                        self.topics.remove(topic);
                        self.node.unsubscribe(topic);
                    } else {
                        let _ = sender.send(message.clone());
                    }
                }
                self.emit(Event::Message(message));
            }
            NodeEvent::LookupFinished { id, peers, .. } => {
                if let Some(reply) = self.lookups.remove(&id) {
                    let _ = reply.send(peers);
                }
            }
            NodeEvent::PutFinished {
                id,
                key,
                stored,
                asked,
                refused,
            } => {
                if let Some((removal, reply)) = self.puts.remove(&id) {
                    let result = match refused {
                        // The name is another publisher's, at least at some of the closest nodes
                        // (a removal did its part wherever this node's record was).
                        Some(why @ StoreError::OtherPublisher) if !removal => {
                            Err(Error::DhtRefused(why))
                        }
                        Some(why) if stored == 0 => Err(Error::DhtRefused(why)),
                        None if stored == 0 => Err(Error::DhtTimeout),
                        _ => Ok(PutOutcome {
                            key,
                            stored: stored as usize,
                            asked: asked as usize,
                            refused,
                        }),
                    };
                    let _ = reply.send(result);
                }
            }
            NodeEvent::GetFinished {
                id,
                record,
                answered,
                ..
            } => {
                if let Some(reply) = self.gets.remove(&id) {
                    let result = match record {
                        Some(record) => Ok(Record::found(record, self.clock.now())),
                        None if answered => Ok(None),
                        None => Err(Error::DhtTimeout),
                    };
                    let _ = reply.send(result);
                }
            }
            NodeEvent::Evicted { by, alternatives } => {
                self.emit(Event::Evicted { by, alternatives });
            }
            NodeEvent::Rejected { by, alternatives } => {
                self.emit(Event::Rejected { by, alternatives });
            }
            NodeEvent::DirectFailed { id, to, reason } => {
                self.emit(Event::DirectFailed { id, to, reason });
            }
            NodeEvent::Dht(event) => debug!(?event, "dht query finished"),
            other => debug!(?other, "node event not handled by this driver"),
        }
    }

    /// Events that fit in the events queue now without overwriting one not yet read (0 without a
    /// reader: nobody would get them), the [`Event::Lagged`] owed to the readers counted.
    fn events_room(&self) -> usize {
        if self.events.receiver_count() == 0 {
            return 0;
        }
        let owed = usize::from(self.events_missed > 0);
        self.limits
            .events
            .saturating_sub(self.events.len())
            .saturating_sub(owed)
    }

    fn emit(&mut self, event: Event) {
        if self.events.receiver_count() == 0 {
            // Not an error: nobody listens.
            return;
        }
        if self.events_room() == 0 {
            // Never overwrite an unread event (it may be an acknowledged direct message).
            self.events_missed += 1;
            self.stats.events_dropped_full += 1;
            return;
        }
        if self.events_missed > 0 {
            let missed = std::mem::take(&mut self.events_missed);
            let _ = self.events.send(Event::Lagged { missed });
        }
        let _ = self.events.send(event);
    }
}
