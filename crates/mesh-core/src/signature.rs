//! How a node checks the ed25519 signatures it receives, and whom it tells of those it makes.

use core::fmt;

use p2pmesh_base::Identity;

/// A signature check: `(public key, signed bytes, signature) -> valid`.
pub type VerifyFn = fn(&[u8; 32], &[u8], &[u8; 64]) -> bool;

/// A note of a signature made: `(public key, signed bytes, signature)`.
pub type SignedFn = fn(&[u8; 32], &[u8], &[u8; 64]);

/// The function a [`Node`](crate::Node) checks every signature with (broadcast messages, DHT records,
/// routed messages, hellos; the base crate's [`Verifier`](p2pmesh_base::Verifier)):
/// [`p2pmesh_base::verify`] (strict ed25519) by default; and the function it tells of every routed
/// message and hello it signs itself: nothing by default.
///
/// A driver has no reason to change either. A simulator that runs thousands of nodes in one process
/// may plug in a memoizing wrapper of [`p2pmesh_base::verify`] (`Node::with_signature_check`): every
/// node still checks every signature and gets the same answer, but each distinct (key, message,
/// signature) costs one ed25519 verification per process instead of one per simulated node, and each
/// key is decompressed once. Told of the signatures the nodes make ([`SignatureCheck::with_signed`]),
/// the memo can take those as valid without verifying them once: a signature made by ed25519 with a
/// key derived from a secret always passes its strict check, so the answer is the same; any other
/// bytes or signature (a forger's, a relay's change) miss the memo and are verified.
#[derive(Clone, Copy)]
pub struct SignatureCheck {
    verify: VerifyFn,
    signed: SignedFn,
}

impl SignatureCheck {
    /// Signatures checked with `verify`; signatures made are told to no one.
    pub fn new(verify: VerifyFn) -> Self {
        Self {
            verify,
            signed: |_, _, _| {},
        }
    }

    /// The same check, and every routed message and hello the node signs told to `signed`.
    #[must_use]
    pub fn with_signed(self, signed: SignedFn) -> Self {
        Self { signed, ..self }
    }

    /// The check itself.
    pub fn verifier(&self) -> VerifyFn {
        self.verify
    }

    /// Signs `message` with `identity` and tells the `signed` function of it: every signature a
    /// node makes (routed messages, hellos) goes through here.
    pub(crate) fn sign(&self, identity: &Identity, message: &[u8]) -> [u8; 64] {
        let signature = identity.sign(message);
        (self.signed)(&identity.public_key(), message, &signature);
        signature
    }
}

impl Default for SignatureCheck {
    fn default() -> Self {
        SignatureCheck::new(p2pmesh_base::verify)
    }
}

impl fmt::Debug for SignatureCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignatureCheck")
    }
}

impl p2pmesh_base::Verifier for SignatureCheck {
    fn verify(&self, public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        (self.verify)(public_key, message, signature)
    }
}
