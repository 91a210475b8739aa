//! What a node does with each frame a link delivers.

use super::*;

impl<S: Signer, V: Verifier> Node<S, V> {
    pub(super) fn on_gossip(&mut self, from: NodeId, message: Message) {
        if message.topic.len() > self.config.max_topic_len
            || message.payload.len() > self.config.max_payload_len
        {
            self.stats.dropped_oversized += 1;
            return;
        }
        let id = MessageId::compute(
            &message.origin,
            message.seq,
            &message.topic,
            &message.payload,
        );
        if id != message.id {
            self.stats.dropped_id_mismatch += 1;
            return;
        }
        // The frame is intact: acknowledge it whatever happens next, so its sender never retransmits a
        // message this node has or will not take.
        self.stats.acks_sent += 1;
        self.send_frame(from, &Frame::Ack(id));

        if let Some(seen) = self.seen.get(&id).copied() {
            self.stats.duplicates += 1;
            self.on_duplicate(from, id, seen, message.hops);
            return;
        }
        self.holds(id, from);
        if message.origin == self.id {
            // Our own message that the seen-cache forgot: never deliver or relay it again.
            self.stats.duplicates += 1;
            return;
        }
        // The hop count is not signed: any relay may rewrite it. So it never decides whether a message
        // is taken: past the limit it is clamped to it, and a message at the limit is still announced
        // (below), so that a relay raising the count turns pushes into announcements, never into loss.
        let hops = message.hops.saturating_add(1).min(self.config.hop_limit);
        if message.timestamp > self.now + self.config.max_clock_skew {
            self.stats.dropped_future += 1;
            return;
        }
        if !self.seen.admits(message.timestamp, self.now) {
            self.stats.dropped_too_old += 1;
            return;
        }
        // Future-dated messages hold at most half the seen-cache, so that forgetting one can never
        // raise its floor past the present (and refuse every honest message in flight).
        if !self.seen.future_room(message.timestamp, self.now) {
            self.stats.dropped_future += 1;
            return;
        }
        // An origin over its rate is refused before its signature costs anything; a token is taken
        // only once the signature holds, so a forger cannot spend another origin's rate.
        if !self.origin_rate.allows(&message.origin, self.now) {
            self.stats.dropped_throttled += 1;
            return;
        }
        // Only now, for a message not seen before, the expensive check.
        match &message.auth {
            None if self.config.require_signatures => {
                self.stats.dropped_unsigned += 1;
                return;
            }
            None => {}
            Some(auth) => {
                if NodeId::from_public_key(&auth.public_key) != message.origin {
                    self.stats.dropped_key_mismatch += 1;
                    return;
                }
                let signed = signed_bytes(
                    &message.origin,
                    message.seq,
                    message.timestamp,
                    &message.topic,
                    &message.payload,
                );
                if !self
                    .verifier
                    .verify(&auth.public_key, &signed, &auth.signature)
                {
                    self.stats.dropped_bad_signature += 1;
                    return;
                }
            }
        }

        self.origin_rate.take(message.origin, self.now);
        self.stats.accepted += 1;
        self.remember(
            id,
            Seen {
                timestamp: message.timestamp,
                from: Some(from),
                hops,
                first_hops: hops,
            },
        );
        // Plumtree: the link that delivered a message first is a tree edge (unless the rooted tree
        // decides, or the node floods). If we had pruned that link, the copy crossed our PRUNE, and
        // the peer counts the link lazy when the PRUNE lands: an empty GRAFT makes it eager at both
        // ends again. Otherwise the link would carry our pushes to the peer but none of its pushes to
        // us, and a later cut elsewhere, taken on the belief that this path exists, would split the
        // tree.
        if self.policy.first_copy_makes_eager()
            && self.links.insert(from, Mode::Eager) == Some(Mode::Lazy)
        {
            self.stats.eager_restored += 1;
            self.send_frame(from, &Frame::Graft(Vec::new()));
        }
        // The links that announced it before it came hold it: on rooted trees it is not announced
        // back to them.
        let announcers: Vec<NodeId> = match self.missing.get(&id) {
            Some(missing) if self.policy.skips_announcers() => {
                missing.announcers.iter().map(|&(_, peer)| peer).collect()
            }
            _ => Vec::new(),
        };
        self.forget_missing(id);

        let mut message = message;
        message.hops = hops;
        let frame = wire::encode(&Frame::Gossip(message.clone()));
        self.cache_insert(id, frame.clone(), Some(from));
        if hops < self.config.hop_limit {
            self.disseminate(id, hops, &frame, Some(from), message.tree, &announcers);
        } else {
            // At the limit: no pushes, but every other link hears of it and may pull it (GRAFT).
            self.stats.hop_limit_announced += 1;
            let holders = self.cache.holders(&id);
            let peers: Vec<NodeId> = self
                .links
                .keys()
                .filter(|p| **p != from && !holders.contains(p))
                .copied()
                .collect();
            for peer in peers {
                self.announce(peer, Announce { id, hops });
            }
        }
        if self.config.deliver_all_topics || self.subscriptions.contains(&message.topic) {
            self.stats.delivered += 1;
            self.emit(Output::Event(Event::Delivered {
                id,
                origin: message.origin,
                topic: message.topic,
                payload: message.payload,
                hops,
                timestamp: message.timestamp,
                from,
            }));
        }
    }

    /// Plumtree cuts the link a second copy came over. Here the cut also shapes the tree by hops, so
    /// that it approaches a shortest-path tree whatever the latencies, and the last delivery hop stays
    /// low for every origin:
    ///
    /// - a copy from the message's parent is a retransmission (our ACK was lost): nothing to cut;
    /// - a copy over a strictly shorter path makes its link the parent, and the old parent is pruned;
    /// - a copy from a peer that received the message later in the tree than we did (more hops), and
    ///   to which we pushed it too (or sent it in answer to its GRAFT), is left for that peer to
    ///   judge when our copy reaches it: it will either keep us as its better parent or prune us,
    ///   and we must not cut the link first;
    /// - otherwise the sender is pruned.
    ///
    /// The hop counts compared are those carried by the copies themselves (each side sends its copy once,
    /// with the hops it first had), so two peers never both leave the decision to the other.
    pub(super) fn on_duplicate(
        &mut self,
        from: NodeId,
        id: MessageId,
        seen: Seen,
        sender_hops: u8,
    ) {
        if seen.from == Some(from) || !self.policy.duplicates_shape_tree() {
            // A retransmission, or a copy under flooding or on a rooted tree (decided elsewhere):
            // nothing to cut.
            self.holds(id, from);
            return;
        }
        let via_sender = sender_hops.saturating_add(1);
        if sender_hops > seen.first_hops && self.cache.pushed(&id, &from) {
            // The sender judges once our copy reaches it, so that copy must arrive: a push it has not
            // acknowledged stays pending (and is retransmitted if it was lost).
            self.cache.add_holder(&id, from);
            return;
        }
        self.holds(id, from);
        if let Some(parent) = seen.from
            && via_sender < seen.hops
            && self.links.contains_key(&parent)
        {
            self.stats.parent_swaps += 1;
            self.links.insert(from, Mode::Eager);
            self.prune(parent);
            self.seen.insert(
                id,
                Seen {
                    from: Some(from),
                    hops: via_sender,
                    ..seen
                },
                self.now,
            );
            return;
        }
        self.prune(from);
    }

    pub(super) fn on_ack(&mut self, from: NodeId, id: MessageId) {
        if let Some(retry) = self.untrack(id, from) {
            self.stats.acks_received += 1;
            // Karn: only a push sent once tells the round trip (an ACK of a resent one may answer
            // either copy).
            if retry.retries == 0 {
                let rtt = self.now.saturating_duration_since(retry.sent);
                self.sample_rtt(from, rtt);
            }
        } else {
            self.stats.acks_unmatched += 1;
        }
        self.cache.add_holder(&id, from);
    }

    pub(super) fn on_ihave(&mut self, from: NodeId, announces: Vec<Announce>) {
        if announces.len() > self.config.max_ids_per_frame {
            self.stats.dropped_oversized += 1;
            return;
        }
        self.stats.ihaves_received += 1;
        // The peer announces rather than pushes: it sees the link as lazy, and so do we until a message
        // shows otherwise.
        if self.links.get(&from) == Some(&Mode::Undecided) {
            self.links.insert(from, Mode::Lazy);
        }
        let nearest_first = self.policy.nearest_announcer_first();
        for Announce { id, hops } in announces {
            self.holds(id, from);
            // Unsigned, like a message's: it only orders the announcers (nearest first), so a lie
            // costs at most one GRAFT timeout; it never makes an announcement ignored.
            let hops = hops.min(self.config.hop_limit);
            if self.seen.contains(&id) {
                continue;
            }
            if let Some(missing) = self.missing.get_mut(&id) {
                if !missing.announcers.iter().any(|(_, p)| *p == from)
                    && missing.announcers.len() < self.config.max_announcers
                {
                    // On rooted trees the nearest announcer to the origin is asked first, so that a
                    // repaired delivery is not many hops longer than the tree's; plain Plumtree asks
                    // in the order announced (its tree follows the GRAFTs).
                    let at = if nearest_first {
                        missing.announcers.partition_point(|(h, _)| *h <= hops)
                    } else {
                        missing.announcers.len()
                    };
                    missing.announcers.insert(at, (hops, from));
                }
                continue;
            }
            // A link announcing made-up ids fills its own share and spends its own rate, and never
            // pushes out what other links announced.
            let owned = self.missing_owned.get(&from).map_or(0, BTreeSet::len);
            if owned >= self.config.max_missing_per_link {
                self.stats.ihave_throttled += 1;
                continue;
            }
            if self.missing.len() >= self.config.max_missing && !self.make_missing_room(owned) {
                self.stats.missing_overflow += 1;
                continue;
            }
            if !self.ihave_rate.take(from, self.now) {
                self.stats.ihave_throttled += 1;
                continue;
            }
            let due = self.now + self.config.graft_timeout;
            self.missing.insert(
                id,
                Missing {
                    announcers: VecDeque::from([(hops, from)]),
                    owner: from,
                    grafts: 0,
                    due,
                },
            );
            self.missing_owned.entry(from).or_default().insert(id);
            self.missing_due.insert((due, id));
        }
    }

    /// Stops tracking the missing message `id`.
    pub(super) fn forget_missing(&mut self, id: MessageId) {
        let Some(missing) = self.missing.remove(&id) else {
            return;
        };
        self.missing_due.remove(&(missing.due, id));
        if let Some(owned) = self.missing_owned.get_mut(&missing.owner) {
            owned.remove(&id);
            if owned.is_empty() {
                self.missing_owned.remove(&missing.owner);
            }
        }
    }

    /// The missing table is full: a link that owns `owned` entries takes the place of an entry of the
    /// link owning the most, if that one owns more. Whether room was made.
    fn make_missing_room(&mut self, owned: usize) -> bool {
        let Some(victim) = self
            .missing_owned
            .values()
            .filter(|ids| ids.len() > owned.saturating_add(1))
            .max_by_key(|ids| ids.len())
            .and_then(|ids| ids.last().copied())
        else {
            return false;
        };
        self.forget_missing(victim);
        true
    }

    pub(super) fn on_graft(&mut self, from: NodeId, ids: Vec<MessageId>) {
        if ids.len() > self.config.max_ids_per_frame {
            self.stats.dropped_oversized += 1;
            return;
        }
        self.stats.grafts_received += 1;
        if self.policy.grafts_and_prunes_set_modes() {
            self.links.insert(from, Mode::Eager);
        }
        for id in ids {
            let Some(frame) = self.cache.frame(&id).map(<[u8]>::to_vec) else {
                self.stats.graft_misses += 1;
                continue;
            };
            self.stats.payload_graft_responses += 1;
            // Answering a GRAFT pushes the message along the new tree edge: if the grafter's own
            // copy crosses it, the grafter judges (see `on_duplicate`), and we must not cut the link
            // it is about to take as its parent.
            self.cache.add_pushed(&id, from);
            self.send(from, frame);
            self.track(id, from);
        }
    }
}
