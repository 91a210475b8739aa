//! The lazy queue: announcements (IHAVE) waiting for the next flush, per link.

use std::collections::BTreeMap;

use p2pmesh_base::NodeId;

use crate::wire::Announce;

/// Announcements batched per link until the next flush, at most `max_per_link` per link.
#[derive(Debug, Clone)]
pub struct LazyQueue {
    queues: BTreeMap<NodeId, Vec<Announce>>,
    max_per_link: usize,
}

impl LazyQueue {
    /// An empty queue holding at most `max_per_link` announcements per link.
    pub fn new(max_per_link: usize) -> Self {
        Self {
            queues: BTreeMap::new(),
            max_per_link,
        }
    }

    /// Queues `announce` for `peer`; `false` if that link's queue is full (the announcement is dropped:
    /// announcements are an optimisation of repair, never the only copy of a message).
    pub fn push(&mut self, peer: NodeId, announce: Announce) -> bool {
        let queue = self.queues.entry(peer).or_default();
        if queue.len() >= self.max_per_link {
            return false;
        }
        queue.push(announce);
        true
    }

    /// Forgets everything queued for `peer`.
    pub fn remove(&mut self, peer: &NodeId) {
        self.queues.remove(peer);
    }

    /// Takes every queued announcement, by link in id order.
    pub fn drain(&mut self) -> BTreeMap<NodeId, Vec<Announce>> {
        core::mem::take(&mut self.queues)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queues.values().all(Vec::is_empty)
    }

    /// Announcements queued, over all links.
    pub fn len(&self) -> usize {
        self.queues.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageId;

    #[test]
    fn bounded_per_link() {
        let mut queue = LazyQueue::new(1);
        let a = NodeId::hash(b"a");
        let announce = Announce {
            id: MessageId::from_bytes([1; 20]),
            hops: 1,
        };
        assert!(queue.push(a, announce));
        assert!(!queue.push(a, announce));
        assert!(queue.push(NodeId::hash(b"b"), announce));
        assert_eq!(queue.len(), 2);
        let drained = queue.drain();
        assert_eq!(drained.len(), 2);
        assert!(queue.is_empty());
    }
}
