//! The wire codec: what nodes send each other, and its checks.
//!
//! A message is one version byte ([`VERSION`], 3) followed by a postcard encoding of [`Message`]. The
//! driver carries the bytes to the peer named in [`Output::Transmit`](crate::Output::Transmit) and hands them
//! to that peer's [`Node::handle_message`](crate::Node::handle_message) with the sender's id, which the
//! transport has authenticated; ids inside messages are only contacts.
//!
//! Decoding is strict: a message larger than `max_message_bytes`, of another version, that does not
//! decode, that has trailing bytes, that lists more than `k` contacts, that carries a value larger than
//! `max_value_bytes`, or a record that is not well formed (a salt over
//! [`MAX_SALT_BYTES`](crate::record::MAX_SALT_BYTES), a key not derived from its public key and salt) is
//! refused with a [`DecodeError`] naming why. A record's signature is checked by the node, not here
//! (see [`record`](crate::record)).

use serde::{Deserialize, Serialize};

use crate::{NodeId, Record};

/// The version byte that starts every message.
pub const VERSION: u8 = 3;

/// A Kademlia message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A request; the receiver answers with a [`Message::Response`] carrying the same `id`.
    Request {
        /// Random id chosen by the requester, echoed in the response.
        id: u64,
        /// What is asked.
        body: Request,
    },
    /// The answer to a request.
    Response {
        /// The id of the request answered.
        id: u64,
        /// The answer.
        body: Response,
    },
}

/// The four Kademlia RPCs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Are you there? Answered by [`Response::Pong`].
    Ping,
    /// The `k` nodes you know closest to `target`. Answered by [`Response::Nodes`].
    FindNode {
        /// The id looked up.
        target: NodeId,
    },
    /// The record under `key`, or else the `k` nodes you know closest to it. Answered by
    /// [`Response::Value`] or [`Response::Nodes`].
    FindValue {
        /// The key looked up.
        key: NodeId,
    },
    /// Keep this record until it expires. Answered by [`Response::Stored`]. Only the record's publisher
    /// may send it, and the record must carry its valid signature.
    Store {
        /// The record to store.
        record: Record,
    },
}

/// Answers to [`Request`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong,
    /// Up to `k` contacts closest to the id asked for, in no particular order.
    Nodes {
        /// The contacts.
        #[serde(with = "contact_list")]
        closer: Vec<NodeId>,
    },
    /// The record asked for by [`Request::FindValue`], signed by its publisher (the asker checks it).
    Value {
        /// The record.
        record: Record,
    },
    /// Answer to [`Request::Store`]: whether the record was kept.
    Stored {
        /// `false` when the record was invalid (badly signed, not sent by its publisher, expired), stale
        /// (a record with a higher `seq`, or the same `seq` and other contents, is held), over the
        /// publisher's quota, or the store was full.
        ok: bool,
    },
}

/// Why bytes are not an acceptable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Larger than `max_message_bytes`.
    #[error("message of {0} bytes exceeds the limit")]
    Oversized(usize),
    /// Empty, or its first byte is not [`VERSION`].
    #[error("unknown message version {0:?}")]
    Version(Option<u8>),
    /// Not a postcard [`Message`], or bytes after it.
    #[error("undecodable message")]
    Undecodable,
    /// Well-formed but beyond a limit (contacts, value size), or a record whose key does not derive
    /// from its public key and salt.
    #[error("message exceeds a limit: {0}")]
    Limit(&'static str),
}

/// Limits applied while decoding, from the [`Config`](crate::Config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message in bytes.
    pub max_message_bytes: usize,
    /// Most contacts in a reply.
    pub max_contacts: usize,
    /// Largest record value in bytes.
    pub max_value_bytes: usize,
}

impl Limits {
    /// The limits a node with this configuration applies.
    pub fn from_config(config: &crate::Config) -> Self {
        Self {
            max_message_bytes: config.max_message_bytes,
            max_contacts: config.k,
            max_value_bytes: config.max_value_bytes,
        }
    }
}

impl Message {
    /// The version byte followed by the postcard encoding.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing into a Vec cannot fail: every type here is plain data of known shape.
        postcard::to_extend(self, vec![VERSION]).expect("a message always serializes")
    }

    /// Parses and checks bytes received from the network.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Message, DecodeError> {
        if bytes.len() > limits.max_message_bytes {
            return Err(DecodeError::Oversized(bytes.len()));
        }
        let (version, body) = match bytes.split_first() {
            Some((&v, body)) => (v, body),
            None => return Err(DecodeError::Version(None)),
        };
        if version != VERSION {
            return Err(DecodeError::Version(Some(version)));
        }
        // postcard pre-allocates a sequence by its declared length only up to serde's cautious bound,
        // and the length check above caps what an element count can really fill.
        let (message, rest) =
            postcard::take_from_bytes::<Message>(body).map_err(|_| DecodeError::Undecodable)?;
        if !rest.is_empty() {
            return Err(DecodeError::Undecodable);
        }
        message.check(limits)?;
        Ok(message)
    }

    fn check(&self, limits: &Limits) -> Result<(), DecodeError> {
        match self {
            Message::Request {
                body: Request::Store { record },
                ..
            }
            | Message::Response {
                body: Response::Value { record },
                ..
            } => {
                if record.value.len() > limits.max_value_bytes {
                    Err(DecodeError::Limit("value too large"))
                } else if !record.is_well_formed() {
                    Err(DecodeError::Limit("malformed record"))
                } else {
                    Ok(())
                }
            }
            Message::Response {
                body: Response::Nodes { closer },
                ..
            } if closer.len() > limits.max_contacts => Err(DecodeError::Limit("too many contacts")),
            _ => Ok(()),
        }
    }
}

/// A contact list on the wire: one byte string of concatenated 20-byte ids (a length, then the ids),
/// which decodes with one copy instead of one call per byte.
mod contact_list {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    use crate::{ID_LEN, NodeId};

    pub(super) fn serialize<S: Serializer>(ids: &[NodeId], s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(ids.len() * ID_LEN);
        for id in ids {
            bytes.extend_from_slice(id.as_bytes());
        }
        s.serialize_bytes(&bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NodeId>, D::Error> {
        struct Ids;
        impl Visitor<'_> for Ids {
            type Value = Vec<NodeId>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("concatenated 20-byte ids")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                if !v.len().is_multiple_of(ID_LEN) {
                    return Err(E::invalid_length(v.len(), &self));
                }
                Ok(v.chunks_exact(ID_LEN)
                    .map(|c| {
                        let mut id = [0u8; ID_LEN];
                        id.copy_from_slice(c);
                        NodeId::from_bytes(id)
                    })
                    .collect())
            }
        }
        d.deserialize_bytes(Ids)
    }
}

/// A record value on the wire: a byte string, decoded with one copy.
pub(crate) mod byte_vec {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl Visitor<'_> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(v.to_vec())
            }
        }
        d.deserialize_bytes(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Instant};
    use p2pmesh_base::Identity;
    use proptest::prelude::*;

    fn signed(salt: &[u8], value: Vec<u8>, expires: Instant) -> Record {
        Record::sign(
            &Identity::from_secret_bytes(&[7; 32]),
            salt.to_vec(),
            u64::MAX,
            value,
            expires,
        )
    }

    fn limits() -> Limits {
        Limits::from_config(&Config::default())
    }

    fn samples() -> Vec<Message> {
        let record = signed(b"salt", b"value".to_vec(), Instant::from_millis(123_456));
        vec![
            Message::Request {
                id: 1,
                body: Request::Ping,
            },
            Message::Request {
                id: u64::MAX,
                body: Request::FindNode {
                    target: NodeId::hash(b"t"),
                },
            },
            Message::Request {
                id: 7,
                body: Request::FindValue {
                    key: NodeId::hash(b"k"),
                },
            },
            Message::Request {
                id: 8,
                body: Request::Store {
                    record: record.clone(),
                },
            },
            Message::Response {
                id: 9,
                body: Response::Pong,
            },
            Message::Response {
                id: 10,
                body: Response::Nodes {
                    closer: (0..20u8).map(|i| NodeId::hash([i])).collect(),
                },
            },
            Message::Response {
                id: 11,
                body: Response::Value { record },
            },
            Message::Response {
                id: 12,
                body: Response::Stored { ok: true },
            },
        ]
    }

    #[test]
    fn round_trip() {
        for m in samples() {
            let bytes = m.encode();
            assert_eq!(bytes[0], VERSION);
            assert!(bytes.len() <= Config::default().max_message_bytes);
            assert_eq!(Message::decode(&bytes, &limits()), Ok(m));
        }
    }

    #[test]
    fn garbage_is_refused() {
        let l = limits();
        assert_eq!(Message::decode(&[], &l), Err(DecodeError::Version(None)));
        assert_eq!(
            Message::decode(&[VERSION + 1, 0, 1, 0], &l),
            Err(DecodeError::Version(Some(VERSION + 1)))
        );
        assert_eq!(
            Message::decode(&[VERSION - 1, 0, 1, 0], &l),
            Err(DecodeError::Version(Some(VERSION - 1)))
        );
        assert_eq!(
            Message::decode(&[VERSION], &l),
            Err(DecodeError::Undecodable)
        );
        assert_eq!(
            Message::decode(&[VERSION, 0xff, 0xff], &l),
            Err(DecodeError::Undecodable)
        );
        let mut trailing = samples()[0].encode();
        trailing.push(0);
        assert_eq!(
            Message::decode(&trailing, &l),
            Err(DecodeError::Undecodable)
        );
        let big = vec![1u8; l.max_message_bytes + 1];
        assert_eq!(
            Message::decode(&big, &l),
            Err(DecodeError::Oversized(l.max_message_bytes + 1))
        );
        // A sequence that claims a huge length must not allocate it: it fails on the missing bytes.
        let huge_len = [VERSION, 1, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert_eq!(
            Message::decode(&huge_len, &l),
            Err(DecodeError::Undecodable)
        );
        // A contact list whose length is not a multiple of 20 bytes.
        let mut ragged = Message::Response {
            id: 0,
            body: Response::Nodes {
                closer: vec![NodeId::hash(b"x")],
            },
        }
        .encode();
        ragged[4] = 19;
        ragged.pop();
        assert_eq!(Message::decode(&ragged, &l), Err(DecodeError::Undecodable));
    }

    #[test]
    fn limits_are_checked() {
        let l = limits();
        let many = Message::Response {
            id: 1,
            body: Response::Nodes {
                closer: (0..21u8).map(|i| NodeId::hash([i])).collect(),
            },
        };
        assert_eq!(
            Message::decode(&many.encode(), &l),
            Err(DecodeError::Limit("too many contacts"))
        );
        let record = signed(b"", vec![0; l.max_value_bytes + 1], Instant::ZERO);
        let store = Message::Request {
            id: 1,
            body: Request::Store { record },
        };
        assert_eq!(
            Message::decode(&store.encode(), &l),
            Err(DecodeError::Limit("value too large"))
        );
        // A key that is not SHA-1(public key, salt), and a salt over 64 bytes.
        let mut moved = signed(b"", vec![1], Instant::ZERO);
        moved.key = NodeId::hash(b"elsewhere");
        let mut salty = signed(b"", vec![1], Instant::ZERO);
        salty.salt = vec![0; crate::record::MAX_SALT_BYTES + 1];
        salty.key = Record::key_for(&salty.salt);
        for record in [moved, salty] {
            let answer = Message::Response {
                id: 1,
                body: Response::Value { record },
            };
            assert_eq!(
                Message::decode(&answer.encode(), &l),
                Err(DecodeError::Limit("malformed record"))
            );
        }
    }

    #[test]
    fn largest_messages_fit_the_limit() {
        let c = Config::default();
        let salt = [0xff; crate::record::MAX_SALT_BYTES];
        let record = signed(
            &salt,
            vec![0xff; c.max_value_bytes],
            Instant::from_micros(u64::MAX),
        );
        let m = Message::Request {
            id: u64::MAX,
            body: Request::Store { record },
        };
        assert!(m.encode().len() <= c.max_message_bytes);
        // The overhead Config::validate reserves covers the largest record's fields.
        assert!(m.encode().len() <= c.max_value_bytes + crate::config::MESSAGE_OVERHEAD);
        assert_eq!(Message::decode(&m.encode(), &limits()), Ok(m));
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Message::decode(&bytes, &limits());
            let mut versioned = bytes.clone();
            versioned.insert(0, VERSION);
            let _ = Message::decode(&versioned, &limits());
        }
    }
}
