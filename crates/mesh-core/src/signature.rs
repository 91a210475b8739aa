//! How a node checks the ed25519 signatures of broadcast messages.

use core::fmt;

/// The function a [`Node`](crate::Node) checks every signature with (broadcast messages, DHT records,
/// routed messages, hellos; the base crate's [`Verifier`](p2pmesh_base::Verifier)):
/// [`p2pmesh_base::verify`] (strict ed25519) by default.
///
/// A driver has no reason to change it. A simulator that runs thousands of nodes in one process may
/// plug in a memoizing wrapper of [`p2pmesh_base::verify`] (`Node::with_signature_check`): every node
/// still checks every signature and gets the same answer, but each distinct (key, message, signature)
/// costs one ed25519 verification per process instead of one per simulated node, and each key is
/// decompressed once.
#[derive(Clone, Copy)]
pub struct SignatureCheck(pub fn(&[u8; 32], &[u8], &[u8; 64]) -> bool);

impl Default for SignatureCheck {
    fn default() -> Self {
        SignatureCheck(p2pmesh_base::verify)
    }
}

impl fmt::Debug for SignatureCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignatureCheck")
    }
}

impl p2pmesh_base::Verifier for SignatureCheck {
    fn verify(&self, public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        (self.0)(public_key, message, signature)
    }
}
