//! Keys: who signs a message and how a signature is checked.
//!
//! The node only needs two things from cryptography, so they sit behind two small traits: a [`Signer`]
//! (the node's own key) and a [`Verifier`] (anyone's signature). [`Identity`] and [`Ed25519`] are the
//! ed25519-dalek implementations; tests and simulators may plug in their own.

use core::fmt;

use crate::id::NodeId;
use ed25519_dalek::Signer as _;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};

/// Length of an ed25519 secret key in bytes.
pub const SECRET_KEY_LEN: usize = 32;
/// Length of an ed25519 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// The node's own key: what it needs to sign the messages it publishes.
pub trait Signer {
    /// The 32-byte ed25519 public key.
    fn public_key(&self) -> [u8; PUBLIC_KEY_LEN];

    /// An ed25519 signature over `message`.
    fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN];

    /// The node id this key stands for: SHA-1 of the public key.
    fn id(&self) -> NodeId {
        NodeId::from_public_key(&self.public_key())
    }
}

/// Checks other nodes' signatures.
pub trait Verifier {
    /// Whether `signature` is a valid signature of `message` under `public_key`.
    fn verify(
        &self,
        public_key: &[u8; PUBLIC_KEY_LEN],
        message: &[u8],
        signature: &[u8; SIGNATURE_LEN],
    ) -> bool;
}

/// An ed25519 key pair and the node id derived from it.
///
/// The same identity signs gossip messages in gossip-core and, in mesh-core, the peer hello and direct messages.
/// `Debug` prints the id only, never the secret.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
    public_key: [u8; PUBLIC_KEY_LEN],
    id: NodeId,
}

impl Identity {
    /// The identity whose secret key is these 32 bytes (from the OS's entropy in a driver, fixed in a
    /// test).
    pub fn from_secret_bytes(secret: &[u8; SECRET_KEY_LEN]) -> Self {
        let key = SigningKey::from_bytes(secret);
        let public_key = key.verifying_key().to_bytes();
        Self {
            key,
            public_key,
            id: NodeId::from_public_key(&public_key),
        }
    }

    /// The 32 secret bytes, to store the identity and restore it with [`Identity::from_secret_bytes`].
    pub fn to_secret_bytes(&self) -> [u8; SECRET_KEY_LEN] {
        self.key.to_bytes()
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.public_key
    }

    /// The node id: SHA-1 of the public key.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// An ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(message).to_bytes()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Signer for Identity {
    fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.public_key
    }

    fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        Identity::sign(self, message)
    }

    fn id(&self) -> NodeId {
        self.id
    }
}

/// The ed25519 [`Verifier`]: [`verify`] behind the trait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ed25519;

impl Verifier for Ed25519 {
    fn verify(
        &self,
        public_key: &[u8; PUBLIC_KEY_LEN],
        message: &[u8],
        signature: &[u8; SIGNATURE_LEN],
    ) -> bool {
        verify(public_key, message, signature)
    }
}

/// Whether `signature` is a valid ed25519 signature of `message` under `public_key`.
///
/// Strict verification (`verify_strict`): small-order keys and non-canonical signatures are refused, so a
/// signature cannot be mauled into a second valid one.
pub fn verify(
    public_key: &[u8; PUBLIC_KEY_LEN],
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    key.verify_strict(message, &Signature::from_bytes(signature))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip() {
        let identity = Identity::from_secret_bytes(&[7; 32]);
        let signature = identity.sign(b"hello");
        assert!(verify(&identity.public_key(), b"hello", &signature));
        assert!(!verify(&identity.public_key(), b"hellp", &signature));
        let other = Identity::from_secret_bytes(&[8; 32]);
        assert!(!verify(&other.public_key(), b"hello", &signature));
        assert!(!verify(&[0xff; 32], b"hello", &signature));
    }

    #[test]
    fn id_is_sha1_of_public_key_and_secret_round_trips() {
        let identity = Identity::from_secret_bytes(&[9; 32]);
        assert_eq!(
            identity.id(),
            NodeId::from_public_key(&identity.public_key())
        );
        assert_eq!(Signer::id(&identity), identity.id());
        let again = Identity::from_secret_bytes(&identity.to_secret_bytes());
        assert_eq!(again.id(), identity.id());
        assert!(!format!("{identity:?}").contains("key"));
    }
}
