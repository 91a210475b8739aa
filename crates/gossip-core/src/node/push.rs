//! How a new message leaves a node: pushes and announcements as the policy decides, the adaptive
//! fanout, and the retransmission of unacknowledged pushes.

use super::*;

impl<S: Signer, V: Verifier> Node<S, V> {
    /// Pushes `frame` to the tree and announces it to the other links, skipping `except` and links known
    /// to hold it. Undecided links are split by the adaptive fanout. The links in `announcers`
    /// announced the message before it came: they get no announcement (a push still, where the
    /// policy pushes).
    pub(super) fn disseminate(
        &mut self,
        id: MessageId,
        hops: u8,
        frame: &[u8],
        except: Option<NodeId>,
        tree: u8,
        announcers: &[NodeId],
    ) {
        let holders = self.cache.holders(&id);
        let mut eager = Vec::new();
        let mut lazy = Vec::new();
        let mut undecided = Vec::new();
        let on_tree: Vec<NodeId> = if self.policy.keeps_trees() {
            let tree = usize::from(tree) % self.places.len().max(1);
            self.tree_links(tree).collect()
        } else {
            Vec::new()
        };
        let near_origin = hops < self.config.eager_radius;
        for (&peer, &mode) in &self.links {
            if Some(peer) == except || holders.contains(&peer) {
                continue;
            }
            match self
                .policy
                .target(mode, on_tree.contains(&peer), near_origin)
            {
                Target::Push => eager.push(peer),
                Target::Announce => lazy.push(peer),
                Target::Fanout => undecided.push(peer),
            }
        }
        if !undecided.is_empty() {
            let push = self.fanout(undecided.len());
            // A partial Fisher-Yates shuffle picks `push` of them uniformly.
            for i in 0..push {
                let j = self.rng.random_range(i..undecided.len());
                undecided.swap(i, j);
            }
            for (i, peer) in undecided.into_iter().enumerate() {
                if i < push {
                    self.links.insert(peer, Mode::Eager);
                    eager.push(peer);
                } else {
                    self.links.insert(peer, Mode::Lazy);
                    lazy.push(peer);
                }
            }
        }
        if except.is_none() && eager.is_empty() && !lazy.is_empty() {
            // Our own message and no tree link yet (a node that just joined): announcements are
            // not tracked, and would die with the links they were queued on, leaving the message
            // nowhere but here. One link gets a push (acknowledged, retried, rerouted if the link
            // fails) so that another node holds it; the others hear of it as usual.
            eager.push(lazy.remove(0));
        }
        for &peer in &eager {
            self.cache.add_pushed(&id, peer);
        }
        for peer in eager {
            self.stats.payload_sends += 1;
            self.send(peer, frame.to_vec());
            self.track(id, peer);
        }
        for peer in lazy {
            if !announcers.contains(&peer) {
                self.announce(peer, Announce { id, hops });
            }
        }
    }

    /// How many of `undecided` links to push to: the seed README's adaptive fanout over the nodes known
    /// (links, or the driver's estimate): all up to 5, 80-90% up to 15, 60-70% beyond; at least one.
    pub(super) fn fanout(&mut self, undecided: usize) -> usize {
        let known = self.config.network_size.unwrap_or(self.links.len());
        let percent = match known {
            0..=5 => 100,
            6..=15 => self.rng.random_range(80..=90),
            _ => self.rng.random_range(60..=70),
        };
        (undecided * percent).div_ceil(100).clamp(1, undecided)
    }

    /// The unacknowledged push of `id` lost its link: send it over every remaining link not known to
    /// hold it.
    pub(super) fn reroute(&mut self, id: MessageId) {
        let Some(frame) = self.cache.frame(&id).map(<[u8]>::to_vec) else {
            self.stats.retries_abandoned += 1;
            return;
        };
        let holders = self.cache.holders(&id);
        let targets: Vec<NodeId> = self
            .links
            .keys()
            .filter(|peer| !holders.contains(peer) && !self.pending.contains_key(&(id, **peer)))
            .copied()
            .collect();
        if targets.is_empty() && self.stranded.len() < self.config.max_cached_messages {
            // No link can take it now: the next link that comes up will.
            self.stranded.insert(id);
        }
        for peer in targets {
            self.stats.payload_reroutes += 1;
            self.send(peer, frame.clone());
            self.track(id, peer);
        }
    }

    /// A link came up: push it every stranded message still cached that it is not known to hold.
    pub(super) fn unstrand(&mut self, peer: NodeId) {
        for id in core::mem::take(&mut self.stranded) {
            let Some(frame) = self.cache.frame(&id).map(<[u8]>::to_vec) else {
                self.stats.retries_abandoned += 1;
                continue;
            };
            if self.holds_or_gets(&id, &peer) {
                continue;
            }
            self.stats.payload_reroutes += 1;
            self.send(peer, frame);
            self.track(id, peer);
        }
    }

    pub(super) fn retry(&mut self, id: MessageId, peer: NodeId) {
        let Some(retry) = self.pending.get(&(id, peer)).copied() else {
            return;
        };
        self.untrack(id, peer);
        if !self.links.contains_key(&peer) {
            return;
        }
        if retry.retries >= self.config.max_retries {
            self.stats.retries_exhausted += 1;
            self.emit(Output::Event(Event::AckTimeout { id, peer }));
            return;
        }
        let Some(frame) = self.cache.frame(&id).map(<[u8]>::to_vec) else {
            self.stats.retries_abandoned += 1;
            return;
        };
        self.stats.payload_retries += 1;
        self.send(peer, frame);
        let retries = retry.retries + 1;
        let due = self.now + self.backoff(peer, retries);
        self.pending.insert(
            (id, peer),
            Retry {
                retries,
                due,
                sent: retry.sent,
            },
        );
        self.pending_due.insert((due, id, peer));
    }

    /// The wait after the `retries`-th transmission to `peer` (0: the first push): the link's
    /// retransmission timeout (`retry_initial` until an ACK measured its round trip, then the
    /// estimate's, at least `retry_min`) times `retry_factor^retries`, capped at `retry_max_delay`.
    pub(super) fn backoff(&self, peer: NodeId, retries: u32) -> Duration {
        let mut delay = self
            .rtt
            .get(&peer)
            .map_or(self.config.retry_initial, |rtt| {
                rtt.timeout(self.config.retry_min, self.config.retry_initial)
            });
        for _ in 0..retries {
            delay = delay.saturating_mul(self.config.retry_factor);
            if delay >= self.config.retry_max_delay {
                break;
            }
        }
        delay.min(self.config.retry_max_delay)
    }
}
