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
    /// A DHT name (the key of [`Mesh::put`](crate::Mesh::put), [`get`](crate::Mesh::get) or
    /// [`remove`](crate::Mesh::remove)) is longer than [`kademlia_core::MAX_SALT_BYTES`].
    #[error("a DHT key of {len} bytes exceeds the limit of {max}")]
    KeyTooLarge {
        /// The name's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value given to [`Mesh::put`](crate::Mesh::put) is larger than the Kademlia config's
    /// `max_value_bytes` (16 KiB by default).
    #[error("a DHT value of {len} bytes exceeds the limit of {max}")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value given to [`Mesh::put`](crate::Mesh::put) is empty (an empty value is how a removal
    /// is written: use [`Mesh::remove`](crate::Mesh::remove)).
    #[error("a DHT value may not be empty (use remove)")]
    EmptyValue,
    /// [`Mesh::remove`](crate::Mesh::remove) of a name this node does not publish (only the
    /// publisher can remove a record, and only while its node runs).
    #[error("this node publishes no record under that key")]
    NotPublished,
    /// Too many lookups and DHT commands run at once (the node's `max_lookups`); try again later.
    #[error("too many lookups and DHT commands running")]
    Busy,
    /// The record was refused: no node stored it, for the reason given (the last one heard); or,
    /// with [`StoreError::OtherPublisher`](kademlia_core::StoreError::OtherPublisher), a node
    /// refused it because another node published a record under this name first and it lives (the
    /// name is taken, even if nodes that did not hold that record stored this one).
    #[error("no node stored the record: {0}")]
    DhtRefused(kademlia_core::StoreError),
    /// No node answered a DHT command before its deadline (the node has no links yet, or the
    /// requests were lost): nothing was stored, or nothing could be looked up.
    #[error("no node answered the DHT request")]
    DhtTimeout,
}

impl Error {
    /// The facade's error for what the node refused of a DHT command on the name `key`.
    pub(crate) fn from_dht(err: mesh_core::Error, key: &[u8]) -> Self {
        match err {
            mesh_core::Error::TooLarge { .. } if key.len() > kademlia_core::MAX_SALT_BYTES => {
                Self::KeyTooLarge {
                    len: key.len(),
                    max: kademlia_core::MAX_SALT_BYTES,
                }
            }
            mesh_core::Error::TooLarge { len, max } => Self::ValueTooLarge { len, max },
            mesh_core::Error::EmptyValue => Self::EmptyValue,
            mesh_core::Error::NotPublished => Self::NotPublished,
            mesh_core::Error::Busy => Self::Busy,
            other => Self::Node(other),
        }
    }
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
