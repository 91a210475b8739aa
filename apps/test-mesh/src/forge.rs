//! A forger for the `forged` scenario: a [`LinkConnector`] wrapper whose links rewrite this node's
//! own outgoing frames, so that what its honest code sends becomes what an attacker would send.
//!
//! Only payloads that start with `FORGE:<kind>:` are touched (the `forge` command sends them):
//! - `bad_signature`: a broadcast whose signature has one bit flipped;
//! - `spoofed_origin`: a broadcast whose origin is the victim (its id recomputed, the forger's key
//!   and signature kept: the key does not hash to the origin);
//! - `spoofed_sender`: a direct message whose origin is the victim, shown as forwarded by the
//!   forger (`path = [victim, forger]`), with the forger's key and signature (or none, when it
//!   went straight over a link).
//!
//! Were any of them delivered, its receiver would report a message from the victim, or with a
//! broken signature, whose payload starts with `FORGE:`; the scenario checks that none is.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use p2pmesh::gossip_core::{self, MessageId};
use p2pmesh::mesh_core::NodeId;
use p2pmesh::mesh_core::frame::{Frame, Payload, Routed};
use p2pmesh::transport::{LinkConnector, LinkError, LinkEvent, LinkSender, PeerId, PeerLink, Role};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a forged message fakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A broadcast with a corrupted signature.
    BadSignature,
    /// A broadcast claiming the victim as its origin.
    SpoofedOrigin,
    /// A direct message claiming the victim as its sender.
    SpoofedSender,
}

impl Kind {
    /// The payload prefix that marks a message to forge this way.
    pub fn marker(self) -> &'static str {
        match self {
            Kind::BadSignature => "FORGE:bad_signature:",
            Kind::SpoofedOrigin => "FORGE:spoofed_origin:",
            Kind::SpoofedSender => "FORGE:spoofed_sender:",
        }
    }
}

/// Prefix of every forged payload.
pub const FORGED_PREFIX: &str = "FORGE:";

/// What the forger's links share: its own id and the victim its forgeries claim to be.
#[derive(Debug, Clone)]
pub struct Forgery {
    local: NodeId,
    victim: Arc<Mutex<Option<NodeId>>>,
}

impl Forgery {
    /// A forger with id `local` and no victim yet.
    pub fn new(local: NodeId) -> Self {
        Self {
            local,
            victim: Arc::new(Mutex::new(None)),
        }
    }

    /// The node later forgeries claim to come from.
    pub fn set_victim(&self, victim: NodeId) {
        *self.victim.lock().unwrap_or_else(PoisonError::into_inner) = Some(victim);
    }

    fn victim(&self) -> Option<NodeId> {
        *self.victim.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `bytes` (one frame as this node sends it) forged if it carries a marked payload, else as is.
    pub fn rewrite(&self, bytes: Vec<u8>) -> Vec<u8> {
        match Frame::decode(&bytes) {
            Ok(Frame::Gossip(inner)) => match self.rewrite_gossip(&inner) {
                Some(forged) => Frame::Gossip(forged).encode(),
                None => bytes,
            },
            Ok(Frame::Routed(routed)) => match self.rewrite_routed(routed) {
                Some(forged) => Frame::Routed(forged).encode(),
                None => bytes,
            },
            _ => bytes,
        }
    }

    fn rewrite_gossip(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let gossip_core::wire::Frame::Gossip(mut message) =
            gossip_core::wire::decode(bytes).ok()?
        else {
            return None;
        };
        if message.origin != self.local {
            return None;
        }
        if message
            .payload
            .starts_with(Kind::BadSignature.marker().as_bytes())
        {
            let auth = message.auth.as_mut()?;
            auth.signature[0] ^= 1;
        } else if message
            .payload
            .starts_with(Kind::SpoofedOrigin.marker().as_bytes())
        {
            let victim = self.victim()?;
            message.origin = victim;
            message.id = MessageId::compute(&victim, message.seq, &message.topic, &message.payload);
        } else {
            return None;
        }
        Some(gossip_core::wire::encode(
            &gossip_core::wire::Frame::Gossip(message),
        ))
    }

    fn rewrite_routed(&self, mut routed: Routed) -> Option<Routed> {
        if routed.src != self.local {
            return None;
        }
        let body: Payload = postcard::from_bytes(&routed.body).ok()?;
        let Payload::Data(data) = body else {
            return None;
        };
        if !data.starts_with(Kind::SpoofedSender.marker().as_bytes()) {
            return None;
        }
        let victim = self.victim()?;
        routed.src = victim;
        routed.path = vec![victim, self.local];
        Some(routed)
    }
}

/// Opens links through `C` whose sent frames pass through [`Forgery::rewrite`].
pub struct ForgingConnector<C> {
    inner: C,
    forgery: Forgery,
}

impl<C> ForgingConnector<C> {
    /// Wraps `inner`.
    pub fn new(inner: C, forgery: Forgery) -> Self {
        Self { inner, forgery }
    }
}

impl<C> fmt::Debug for ForgingConnector<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForgingConnector")
            .field("forgery", &self.forgery)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<C> LinkConnector for ForgingConnector<C>
where
    C: LinkConnector,
{
    type Link = ForgingLink<C::Link>;

    async fn connect(&self, peer: PeerId, role: Role) -> Result<Self::Link, LinkError> {
        Ok(ForgingLink {
            inner: self.inner.connect(peer, role).await?,
            forgery: self.forgery.clone(),
        })
    }
}

/// A link of a [`ForgingConnector`].
pub struct ForgingLink<L> {
    inner: L,
    forgery: Forgery,
}

impl<L> fmt::Debug for ForgingLink<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForgingLink").finish_non_exhaustive()
    }
}

#[async_trait]
impl<L> PeerLink for ForgingLink<L>
where
    L: PeerLink,
{
    type Sender = ForgingSender<L::Sender>;

    fn peer(&self) -> &PeerId {
        self.inner.peer()
    }

    fn sender(&self) -> Self::Sender {
        ForgingSender {
            inner: self.inner.sender(),
            forgery: self.forgery.clone(),
        }
    }

    async fn handle_signal(&mut self, signal: Value) -> Result<(), LinkError> {
        self.inner.handle_signal(signal).await
    }

    async fn next_event(&mut self) -> Option<LinkEvent> {
        self.inner.next_event().await
    }

    async fn close(&mut self) {
        self.inner.close().await;
    }
}

/// The sending half of a [`ForgingLink`].
#[derive(Clone)]
pub struct ForgingSender<S> {
    inner: S,
    forgery: Forgery,
}

impl<S> fmt::Debug for ForgingSender<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForgingSender").finish_non_exhaustive()
    }
}

#[async_trait]
impl<S> LinkSender for ForgingSender<S>
where
    S: LinkSender,
{
    async fn send(&self, bytes: Vec<u8>) -> Result<(), LinkError> {
        self.inner.send(self.forgery.rewrite(bytes)).await
    }
}

#[cfg(test)]
mod tests {
    use p2pmesh::gossip_core::wire::{self, Auth, Message};
    use p2pmesh::gossip_core::{Instant, PUBLIC_KEY_LEN, SIGNATURE_LEN};

    use super::*;

    fn id(byte: u8) -> NodeId {
        NodeId::from_bytes([byte; 20])
    }

    fn gossip(origin: NodeId, payload: &[u8]) -> Vec<u8> {
        let message = Message {
            id: MessageId::compute(&origin, 7, "t", payload),
            origin,
            seq: 7,
            timestamp: Instant::from_micros(1),
            topic: "t".into(),
            payload: payload.to_vec(),
            hops: 0,
            tree: 0,
            auth: Some(Auth {
                public_key: [1; PUBLIC_KEY_LEN],
                signature: [2; SIGNATURE_LEN],
            }),
        };
        Frame::Gossip(wire::encode(&wire::Frame::Gossip(message))).encode()
    }

    fn message_of(frame: &[u8]) -> Message {
        let Ok(Frame::Gossip(inner)) = Frame::decode(frame) else {
            panic!("not a gossip frame");
        };
        let Ok(wire::Frame::Gossip(message)) = wire::decode(&inner) else {
            panic!("not a gossip message");
        };
        message
    }

    fn direct(src: NodeId, data: &[u8]) -> Vec<u8> {
        Frame::Routed(Routed {
            src,
            dst: id(9),
            id: 1,
            sent_at: 0,
            lookup: None,
            hops_left: 8,
            path: vec![src],
            route: Vec::new(),
            key: [1; 32],
            signature: Vec::new(),
            body: postcard::to_allocvec(&Payload::Data(data.to_vec())).expect("encodes"),
        })
        .encode()
    }

    #[test]
    fn marked_broadcasts_get_a_bad_signature_or_the_victims_origin() {
        let forgery = Forgery::new(id(1));
        forgery.set_victim(id(2));
        let honest = gossip(id(1), b"FORGE:bad_signature:x");
        let forged = message_of(&forgery.rewrite(honest.clone()));
        let before = message_of(&honest);
        assert_eq!(forged.auth.as_ref().map(|a| a.signature[0]), Some(3));
        assert_eq!((forged.origin, forged.id), (before.origin, before.id));

        let forged = message_of(&forgery.rewrite(gossip(id(1), b"FORGE:spoofed_origin:x")));
        assert_eq!(forged.origin, id(2));
        assert_eq!(
            forged.id,
            MessageId::compute(&id(2), 7, "t", b"FORGE:spoofed_origin:x")
        );
        assert_eq!(forged.auth, before.auth);
    }

    #[test]
    fn marked_direct_messages_claim_the_victim_as_sender() {
        let forgery = Forgery::new(id(1));
        forgery.set_victim(id(2));
        let forged = forgery.rewrite(direct(id(1), b"FORGE:spoofed_sender:x"));
        let Ok(Frame::Routed(r)) = Frame::decode(&forged) else {
            panic!("not routed");
        };
        assert_eq!((r.src, r.path), (id(2), vec![id(2), id(1)]));
    }

    #[test]
    fn everything_else_passes_unchanged() {
        let forgery = Forgery::new(id(1));
        forgery.set_victim(id(2));
        for frame in [
            gossip(id(1), b"hello"),
            gossip(id(3), b"FORGE:bad_signature:relayed, not ours"),
            direct(id(1), b"hello"),
            direct(id(3), b"FORGE:spoofed_sender:relayed"),
            Frame::Ping(5).encode(),
            vec![0xff, 0x00],
        ] {
            assert_eq!(forgery.rewrite(frame.clone()), frame);
        }
        // Without a victim, nothing claims to be someone else.
        let no_victim = Forgery::new(id(1));
        let frame = direct(id(1), b"FORGE:spoofed_sender:x");
        assert_eq!(no_victim.rewrite(frame.clone()), frame);
    }
}
