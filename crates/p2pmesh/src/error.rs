//! The facade's errors.

use std::time::Duration;

/// Why a [`Mesh`](crate::Mesh) operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The mesh has shut down (after [`Mesh::leave`](crate::Mesh::leave), or its driver ended).
    #[error("the mesh has shut down")]
    Closed,
    /// [`Mesh::join`](crate::Mesh::join) was called twice.
    #[error("the mesh has already joined (or is joining)")]
    AlreadyJoined,
    /// The builder has no signaling transport: call `signaling_url` or `transport`.
    #[error("no signaling transport configured (call `signaling_url` or `transport`)")]
    NoTransport,
    /// The builder has no link connector (only a builder not made by `Mesh::builder` can lack one).
    #[error("no link connector configured (call `connector`)")]
    NoConnector,
    /// The transport given to the builder holds another id than the mesh's key pair.
    #[error("the transport's id {transport} is not the mesh's id {mesh}")]
    IdMismatch {
        /// The mesh's id (SHA-1 of its public key).
        mesh: String,
        /// The transport's id.
        transport: String,
    },
    /// `build` was called outside a tokio runtime.
    #[error("p2pmesh needs a tokio runtime")]
    NoRuntime,
    /// The operating system's randomness could not be read (to make a key pair).
    #[error("no OS randomness: {0}")]
    Entropy(String),
    /// The signaling server refused the join, or the transport closed for good while joining.
    #[error("signaling failed: {0}")]
    Signaling(String),
    /// The join did not complete within the builder's `join_timeout`.
    #[error("joining the signaling server timed out after {0:?}")]
    JoinTimeout(Duration),
    /// A builder setting cannot work; [`MeshBuilder::build`](crate::MeshBuilder::build) refused it.
    #[error(transparent)]
    InvalidSetting(#[from] InvalidSetting),
    /// The node's configuration (`max_peers`, `kademlia_k`, or what [`MeshBuilder::configure`]
    /// changed) cannot work; [`MeshBuilder::build`](crate::MeshBuilder::build) refused it.
    ///
    /// [`MeshBuilder::configure`]: crate::MeshBuilder::configure
    #[error("invalid configuration: {0}")]
    InvalidConfig(#[from] mesh_core::ConfigError),
    /// The node refused the command (message too large, too many pending, ...).
    #[error(transparent)]
    Node(#[from] mesh_core::Error),
}

/// A setting of [`MeshBuilder`](crate::MeshBuilder) (or of the node's configuration) that cannot
/// work, and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{setting}`: {requirement}")]
pub struct InvalidSetting {
    /// The setting, as the builder or [`mesh_core::Config`] names it (e.g. `max_peers`,
    /// `gossip.trees`).
    pub setting: &'static str,
    /// What it must be.
    pub requirement: &'static str,
}

impl InvalidSetting {
    pub(crate) fn new(setting: &'static str, requirement: &'static str) -> Self {
        Self {
            setting,
            requirement,
        }
    }
}
