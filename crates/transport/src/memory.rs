//! In-memory implementations of the transport traits, for tests of drivers.
//!
//! [`MemorySignalingHub`] behaves like the signaling server in miniature (one room, `from`
//! always set by the hub, targeted introductions); [`MemoryLinkNetwork`] pairs
//! [`MemoryLink`]s without any signals. Every queue is bounded by the capacity given at
//! construction; an event that does not fit is dropped, as a real network may drop it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::{
    ClientMessage, ErrorCode, LinkConnector, LinkError, LinkEvent, PeerId, PeerLink, Role, RpcKind,
    SignalingTransport, TransportError, TransportEvent,
};

/// How many peers a join is introduced to in the hub.
pub const MEMORY_BOOTSTRAP_COUNT: usize = 5;

type Peers = HashMap<PeerId, mpsc::Sender<TransportEvent>>;

/// A shared in-memory signaling "server".
#[derive(Debug, Clone)]
pub struct MemorySignalingHub {
    peers: Arc<Mutex<Peers>>,
    capacity: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemorySignalingHub {
    /// A hub whose per-peer event queues hold `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            peers: Arc::new(Mutex::new(HashMap::new())),
            capacity: capacity.max(1),
        }
    }

    /// Join as `peer_id`: the transport's first events are `Open` and `BootstrapPeers`, and
    /// the introduced peers get a `ConnectRequest`. Fails if the id is held.
    pub fn join(&self, peer_id: PeerId) -> Result<MemorySignaling, ErrorCode> {
        let (tx, rx) = mpsc::channel(self.capacity);
        let mut peers = lock(&self.peers);
        if peers.contains_key(&peer_id) {
            return Err(ErrorCode::IdTaken);
        }
        let key = peer_id.distance_key();
        let mut others: Vec<(&PeerId, [u8; 20])> =
            peers.keys().map(|p| (p, p.distance_key())).collect();
        others.sort_by_key(|(_, k)| xor(k, &key));
        let introduced: Vec<PeerId> = others
            .into_iter()
            .take(MEMORY_BOOTSTRAP_COUNT)
            .map(|(p, _)| p.clone())
            .collect();
        let _ = tx.try_send(TransportEvent::Open {
            peer_id: peer_id.clone(),
            room: crate::DEFAULT_ROOM.to_owned(),
        });
        let _ = tx.try_send(TransportEvent::BootstrapPeers {
            peers: introduced.clone(),
        });
        for p in &introduced {
            if let Some(other) = peers.get(p) {
                let _ = other.try_send(TransportEvent::ConnectRequest {
                    peer: peer_id.clone(),
                });
            }
        }
        peers.insert(peer_id.clone(), tx.clone());
        Ok(MemorySignaling {
            hub: self.clone(),
            id: peer_id,
            own: tx,
            events: rx,
            closed: false,
        })
    }

    /// How many peers are joined.
    pub fn len(&self) -> usize {
        lock(&self.peers).len()
    }

    /// Whether no peer is joined.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn xor(a: &[u8; 20], b: &[u8; 20]) -> [u8; 20] {
    let mut out = [0u8; 20];
    for i in 0..20 {
        out[i] = a[i] ^ b[i];
    }
    out
}

/// One peer's connection to a [`MemorySignalingHub`].
#[derive(Debug)]
pub struct MemorySignaling {
    hub: MemorySignalingHub,
    id: PeerId,
    own: mpsc::Sender<TransportEvent>,
    events: mpsc::Receiver<TransportEvent>,
    closed: bool,
}

impl MemorySignaling {
    fn relay_event(&self, message: ClientMessage) -> Result<(PeerId, Vec<TransportEvent>), ()> {
        let from = self.id.clone();
        Ok(match message {
            ClientMessage::Signal { to, signal, .. } => {
                (to, vec![TransportEvent::Signal { from, signal }])
            }
            ClientMessage::BatchedSignals { to, signals, .. } => {
                let events = signals
                    .into_iter()
                    .map(|signal| TransportEvent::Signal {
                        from: from.clone(),
                        signal,
                    })
                    .collect();
                (to, events)
            }
            ClientMessage::ConnectionRejected {
                to,
                reason,
                alternative_peers,
                ..
            } => (
                to,
                vec![TransportEvent::ConnectionRejected {
                    from,
                    reason,
                    alternative_peers,
                }],
            ),
            ClientMessage::SignalRejected {
                to,
                reason,
                correct_initiator,
            } => (
                to,
                vec![TransportEvent::SignalRejected {
                    from,
                    reason,
                    correct_initiator,
                }],
            ),
            ClientMessage::KademliaRpcRequest { to, rpc_message } => (
                to,
                vec![TransportEvent::KademliaRpc {
                    from,
                    kind: RpcKind::Request,
                    message: rpc_message,
                }],
            ),
            ClientMessage::KademliaRpcResponse { to, rpc_message } => (
                to,
                vec![TransportEvent::KademliaRpc {
                    from,
                    kind: RpcKind::Response,
                    message: rpc_message,
                }],
            ),
            ClientMessage::Join(_) | ClientMessage::Leave { .. } | ClientMessage::Ping { .. } => {
                return Err(());
            }
        })
    }

    fn error(&self, code: ErrorCode, message: String, peer_id: Option<PeerId>) {
        let _ = self.own.try_send(TransportEvent::Error {
            code: Some(code),
            message,
            peer_id,
        });
    }
}

#[async_trait]
impl SignalingTransport for MemorySignaling {
    fn local_id(&self) -> &PeerId {
        &self.id
    }

    async fn send(&mut self, message: ClientMessage) -> Result<(), TransportError> {
        if self.closed {
            return Err(TransportError::Closed);
        }
        let Ok((to, events)) = self.relay_event(message) else {
            return Ok(());
        };
        if to == self.id {
            self.error(
                ErrorCode::SelfSignal,
                "a message to oneself".into(),
                Some(to),
            );
            return Ok(());
        }
        let target = lock(&self.hub.peers).get(&to).cloned();
        match target {
            Some(target) => {
                for event in events {
                    if target.try_send(event).is_err() {
                        self.error(
                            ErrorCode::PeerBusy,
                            format!("peer {to} is busy"),
                            Some(to.clone()),
                        );
                        break;
                    }
                }
            }
            None => self.error(
                ErrorCode::UnknownPeer,
                format!("Peer {to} not found."),
                Some(to),
            ),
        }
        Ok(())
    }

    async fn next_event(&mut self) -> Option<TransportEvent> {
        if self.closed {
            return None;
        }
        self.events.recv().await
    }

    async fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let mut peers = lock(&self.hub.peers);
        peers.remove(&self.id);
        for other in peers.values() {
            let _ = other.try_send(TransportEvent::PeerLeft {
                peer: self.id.clone(),
            });
        }
    }
}

impl Drop for MemorySignaling {
    fn drop(&mut self) {
        if !self.closed {
            lock(&self.hub.peers).remove(&self.id);
        }
    }
}

struct HalfLink {
    events: mpsc::Receiver<LinkEvent>,
    own: mpsc::Sender<LinkEvent>,
    remote: mpsc::Sender<LinkEvent>,
}

/// An in-memory network of peer links: two connectors that `connect` to each other get a
/// pair of connected [`MemoryLink`]s (no signals are exchanged).
#[derive(Clone)]
pub struct MemoryLinkNetwork {
    pending: Arc<Mutex<HashMap<(PeerId, PeerId), HalfLink>>>,
    capacity: usize,
}

impl std::fmt::Debug for MemoryLinkNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLinkNetwork")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl MemoryLinkNetwork {
    /// A network whose link queues hold `capacity` events each.
    pub fn new(capacity: usize) -> Self {
        Self {
            pending: Arc::new(Mutex::new(HashMap::new())),
            capacity: capacity.max(2),
        }
    }

    /// The connector of peer `local`.
    pub fn connector(&self, local: PeerId) -> MemoryConnector {
        MemoryConnector {
            network: self.clone(),
            local,
        }
    }
}

/// A peer's [`LinkConnector`] on a [`MemoryLinkNetwork`].
#[derive(Debug, Clone)]
pub struct MemoryConnector {
    network: MemoryLinkNetwork,
    local: PeerId,
}

fn fingerprint(peer: &PeerId) -> String {
    format!("memory {peer}")
}

#[async_trait]
impl LinkConnector for MemoryConnector {
    type Link = MemoryLink;

    async fn connect(&self, peer: PeerId, _role: Role) -> Result<MemoryLink, LinkError> {
        if peer == self.local {
            return Err(LinkError::Setup("a link to oneself".into()));
        }
        let mut pending = lock(&self.network.pending);
        if let Some(half) = pending.remove(&(self.local.clone(), peer.clone())) {
            // The other side connected first: both ends open now.
            let open = |local: &PeerId, remote: &PeerId| LinkEvent::Open {
                local_fingerprint: fingerprint(local),
                remote_fingerprint: fingerprint(remote),
            };
            let _ = half.own.try_send(open(&self.local, &peer));
            let _ = half.remote.try_send(open(&peer, &self.local));
            return Ok(MemoryLink {
                peer,
                events: half.events,
                own: half.own,
                remote: half.remote,
                open: false,
                closed: false,
            });
        }
        let (a_tx, a_rx) = mpsc::channel(self.network.capacity);
        let (b_tx, b_rx) = mpsc::channel(self.network.capacity);
        pending.insert(
            (peer.clone(), self.local.clone()),
            HalfLink {
                events: b_rx,
                own: b_tx.clone(),
                remote: a_tx.clone(),
            },
        );
        Ok(MemoryLink {
            peer,
            events: a_rx,
            own: a_tx,
            remote: b_tx,
            open: false,
            closed: false,
        })
    }
}

/// One end of an in-memory link.
#[derive(Debug)]
pub struct MemoryLink {
    peer: PeerId,
    events: mpsc::Receiver<LinkEvent>,
    own: mpsc::Sender<LinkEvent>,
    remote: mpsc::Sender<LinkEvent>,
    open: bool,
    closed: bool,
}

#[async_trait]
impl PeerLink for MemoryLink {
    fn peer(&self) -> &PeerId {
        &self.peer
    }

    async fn send(&mut self, bytes: Vec<u8>) -> Result<(), LinkError> {
        if self.closed {
            return Err(LinkError::Closed);
        }
        if !self.open {
            return Err(LinkError::NotOpen);
        }
        self.remote
            .send(LinkEvent::Message(bytes))
            .await
            .map_err(|_| LinkError::Closed)
    }

    async fn handle_signal(&mut self, _signal: Value) -> Result<(), LinkError> {
        Ok(())
    }

    async fn next_event(&mut self) -> Option<LinkEvent> {
        if self.closed {
            return None;
        }
        let event = self.events.recv().await?;
        match &event {
            LinkEvent::Open { .. } => self.open = true,
            LinkEvent::Closed(_) => self.closed = true,
            LinkEvent::Signal(_) | LinkEvent::Message(_) => {}
        }
        Some(event)
    }

    async fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = self
                .remote
                .try_send(LinkEvent::Closed("closed by peer".into()));
            let _ = self.own.try_send(LinkEvent::Closed("closed".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn hub_introduces_and_relays_with_from_set() {
        let hub = MemorySignalingHub::new(16);
        let mut a = hub.join(PeerId::new("a")).expect("a");
        let mut b = hub.join(PeerId::new("b")).expect("b");
        assert!(hub.join(PeerId::new("a")).is_err());
        assert!(matches!(
            a.next_event().await,
            Some(TransportEvent::Open { .. })
        ));
        assert!(matches!(
            a.next_event().await,
            Some(TransportEvent::BootstrapPeers { .. })
        ));
        assert_eq!(
            a.next_event().await,
            Some(TransportEvent::ConnectRequest {
                peer: PeerId::new("b")
            })
        );
        b.send_signal(PeerId::new("a"), json!({"type": "offer"}))
            .await
            .expect("send");
        assert_eq!(
            a.next_event().await,
            Some(TransportEvent::Signal {
                from: PeerId::new("b"),
                signal: json!({"type": "offer"})
            })
        );
        b.send_signal(PeerId::new("zz"), json!({}))
            .await
            .expect("send");
        let _ = b.next_event().await; // Open
        let bootstrap = b.next_event().await;
        assert_eq!(
            bootstrap,
            Some(TransportEvent::BootstrapPeers {
                peers: vec![PeerId::new("a")]
            })
        );
        assert!(matches!(
            b.next_event().await,
            Some(TransportEvent::Error {
                code: Some(ErrorCode::UnknownPeer),
                ..
            })
        ));
    }

    #[tokio::test]
    async fn memory_links_open_and_carry_bytes() {
        let net = MemoryLinkNetwork::new(8);
        let a = net.connector(PeerId::new("a"));
        let b = net.connector(PeerId::new("b"));
        let mut ab = a
            .connect(PeerId::new("b"), Role::Initiator)
            .await
            .expect("a");
        let mut ba = b
            .connect(PeerId::new("a"), Role::Responder)
            .await
            .expect("b");
        assert!(matches!(
            ab.next_event().await,
            Some(LinkEvent::Open { .. })
        ));
        assert!(matches!(
            ba.next_event().await,
            Some(LinkEvent::Open { .. })
        ));
        ab.send(b"hi".to_vec()).await.expect("send");
        assert_eq!(
            ba.next_event().await,
            Some(LinkEvent::Message(b"hi".to_vec()))
        );
        ab.close().await;
        assert!(matches!(ba.next_event().await, Some(LinkEvent::Closed(_))));
    }
}
