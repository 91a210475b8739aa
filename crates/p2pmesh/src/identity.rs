//! The node's identity: an ed25519 key pair whose public key hashes to the peer id.

use std::fmt;

use ed25519_dalek::SigningKey;
use mesh_core::NodeId;

use crate::Error;

/// An ed25519 key pair: the identity of a node. Its peer id is SHA-1 of the public key
/// ([`NodeId::from_public_key`]), which the node proves to the signaling server and to each peer.
///
/// `Debug` shows the peer id only, never the secret.
#[derive(Clone)]
pub struct Keypair {
    key: SigningKey,
}

impl Keypair {
    /// A new key pair from the operating system's randomness.
    pub fn generate() -> Result<Self, Error> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| Error::Entropy(e.to_string()))?;
        Ok(Self::from_secret(secret))
    }

    /// The key pair of a 32-byte ed25519 secret key (e.g. one stored by the application).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// The 32 secret bytes (store them to keep the same id across runs).
    pub fn secret(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The 32 bytes of the public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The peer id: SHA-1 of the public key.
    pub fn peer_id(&self) -> NodeId {
        NodeId::from_public_key(&self.public_key())
    }

    pub(crate) fn signing_key(&self) -> SigningKey {
        self.key.clone()
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.peer_id())
    }
}

/// A node's id as the transports write it: the verified id of the same 20 bytes.
pub(crate) fn transport_id(node: NodeId) -> transport::PeerId {
    transport::PeerId::verified(*node.as_bytes())
}

/// A transport's peer id as a node id: verified ids are nodes; compatibility ids are not.
pub(crate) fn node_id(peer: &transport::PeerId) -> Option<NodeId> {
    peer.as_verified()
        .map(|id| NodeId::from_bytes(*id.as_bytes()))
}

/// The key pair a browser tab keeps in its `sessionStorage`, as 64 hex characters of the secret.
#[cfg(target_arch = "wasm32")]
pub(crate) mod session {
    use super::Keypair;

    fn storage() -> Option<web_sys::Storage> {
        web_sys::window()?.session_storage().ok()?
    }

    /// The key pair stored under `key`, if a valid one is there.
    pub(crate) fn load(key: &str) -> Option<Keypair> {
        let text = storage()?.get_item(key).ok()??;
        let secret: [u8; 32] = hex::decode(text.trim()).ok()?.try_into().ok()?;
        Some(Keypair::from_secret(secret))
    }

    /// Stores `keypair` under `key`; without storage (disabled, full) the id lasts this page only.
    pub(crate) fn store(key: &str, keypair: &Keypair) {
        let stored = storage().map(|s| s.set_item(key, &hex::encode(keypair.secret())));
        if !matches!(stored, Some(Ok(()))) {
            tracing::debug!("sessionStorage unavailable: the peer id lasts this page only");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_is_the_transport_id_of_the_same_key() {
        let kp = Keypair::from_secret([9; 32]);
        assert_eq!(
            kp.peer_id().to_string(),
            transport::PeerId::from_public_key(&kp.public_key()).to_string()
        );
        assert_eq!(Keypair::from_secret(kp.secret()).peer_id(), kp.peer_id());
        assert!(!format!("{kp:?}").contains(&format!("{:?}", kp.secret())));
    }

    #[test]
    fn generated_keys_differ() {
        let a = Keypair::generate().expect("entropy");
        let b = Keypair::generate().expect("entropy");
        assert_ne!(a.peer_id(), b.peer_id());
    }
}
