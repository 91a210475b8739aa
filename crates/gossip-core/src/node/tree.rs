//! The rooted trees ([`Config::rooted_tree`]): each node's place in every tree, the TREE frames that
//! tell it, the hold-downs that keep them free of loops, and the tree a published message takes.

use super::*;

/// A tree cost (milliseconds) no path exceeds: sums saturate here.
const MAX_TREE_COST: u32 = 1 << 24;

/// The cost of a link whose round trip is not measured yet, in milliseconds: the one-way latency of
/// a typical wide-area link.
pub(super) const UNMEASURED_LINK_COST: u32 = 50;

/// This node's place in one rooted tree ([`Config::rooted_tree`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Place {
    pub(super) root: NodeId,
    pub(super) distance: u8,
    /// Latency to the root along the path, in milliseconds (see [`TreeAdvert::cost`]).
    pub(super) cost: u32,
    pub(super) parent: Option<NodeId>,
}

/// A tree's hold-down after its path to `root` was lost or got slower: until `until`, a path to
/// `root` is taken only if its cost is at most `feasible` (no slower than the one lost; costs grow
/// along every path, so a path back through this node's subtree is slower, once the subtree has
/// heard this node's cost). Any longer path may lead back through this node's own subtree, whose
/// nodes still advertise the lost path; meanwhile this node advertises what it has instead (another
/// root, or itself), which reaches the subtree and clears it.
///
/// With [`Config::tree_feasible_successors`], `root` is taken only through a link that advertises a
/// cost below `feasible` (EIGRP's feasibility condition), and `feasible` is the lower of the cost
/// this node had and the lowest cost it advertised for `root` within the last hold-down (DUAL's
/// feasible distance, [`Advertised`]). Every node of the subtree took its cost from one of those
/// adverts plus a link, so it advertises more, even if it has not heard this node's latest cost: a
/// link advertising less is not in the subtree, even if its path is slower than the one lost. A node
/// that keeps its root this way changes only its cost, and its subtree follows without a hold-down:
/// a crash or an evicted link then re-parents the nodes below it instead of sending their subtrees to
/// another root and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hold {
    pub(super) root: NodeId,
    pub(super) feasible: u32,
    pub(super) until: Instant,
}

/// Most costs kept per tree in [`Advertised`]; past it the last one is kept longer instead (stricter).
const MAX_ADVERTISED_LOWS: usize = 16;

/// The costs this node advertised in one tree for the root it advertises, over the last
/// [`Config::tree_hold_down`]: the lowest is its feasible distance (DUAL's). Every node of its
/// subtree took its cost from one of these adverts plus at least one link, and has heard the latest
/// within a hold-down (the same assumption as the hold-down's), so a link advertising less than the
/// lowest is not in the subtree.
#[derive(Debug, Clone, Default)]
pub(super) struct Advertised {
    root: Option<NodeId>,
    /// (cost, when last advertised), increasing in both from front to back: the candidates for the
    /// lowest cost of the window (a sliding-window minimum).
    lows: VecDeque<(u32, Instant)>,
}

impl Advertised {
    /// Notes that `cost` for `root` was advertised at `now`.
    fn told(&mut self, root: NodeId, cost: u32, now: Instant, window: Duration) {
        if self.root != Some(root) {
            self.root = Some(root);
            self.lows.clear();
        }
        while self
            .lows
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= window)
        {
            self.lows.pop_front();
        }
        while self.lows.back().is_some_and(|(c, _)| *c >= cost) {
            self.lows.pop_back();
        }
        let full = self.lows.len() >= MAX_ADVERTISED_LOWS;
        match self.lows.back_mut() {
            Some(last) if full => last.1 = now,
            _ => self.lows.push_back((cost, now)),
        }
    }

    /// The lowest cost advertised for `root` within `window` before `now`, if any.
    fn feasible(&self, root: &NodeId, now: Instant, window: Duration) -> Option<u32> {
        if self.root != Some(*root) {
            return None;
        }
        self.lows
            .iter()
            .find(|(_, at)| now.saturating_duration_since(*at) < window)
            .map(|(cost, _)| *cost)
    }
}

/// What one link offers the trees, gathered once per [`Node::update_trees`] rather than looked up
/// again for every tree: the link's cost, its advertised places and the root proofs it gave.
pub(super) struct Offer<'a> {
    peer: NodeId,
    /// The link's cost in the trees: its one-way latency in milliseconds plus
    /// [`Config::tree_hop_cost`], as last fixed by [`Node::refresh_link_cost`];
    /// [`UNMEASURED_LINK_COST`] plus the hop cost until its round trip is known; at least 1, so that
    /// costs grow along every path.
    cost: u32,
    heard: &'a [TreeAdvert],
    proofs: Option<&'a BTreeMap<NodeId, Instant>>,
}

/// The order of roots in tree `tree` of `trees` ([`Config::trees`]): ids compared with their first
/// byte XORed with the tree's share of the id space, so that each tree's root (the lowest id in its
/// order among the nodes that can prove themselves) is another node. Public for simulators that study
/// the trees (which node will be each tree's root).
pub fn tree_order_key(trees: usize, tree: usize, id: &NodeId) -> [u8; 20] {
    let mut key = *id.as_bytes();
    key[0] ^= u8::try_from(tree * 256 / trees.max(1)).unwrap_or(0);
    key
}

/// The trees whose flag is set, as a bit mask for [`Node::update_trees`] (bit `i`: tree `i`).
pub(super) fn tree_mask(flags: impl Iterator<Item = bool>) -> u64 {
    flags
        .enumerate()
        .filter(|(_, set)| *set)
        .fold(0, |mask, (tree, _)| mask | 1 << tree)
}

impl<S: Signer, V: Verifier> Node<S, V> {
    /// [`tree_order_key`] with this node's number of trees.
    pub(super) fn tree_key(&self, tree: usize, id: &NodeId) -> [u8; 20] {
        tree_order_key(self.config.trees, tree, id)
    }

    /// Recomputes this node's place in every tree from what its links told it, and tells the links
    /// whose advertisement changed.
    ///
    /// Loop freedom without sequence numbers: a node that loses its path to a root, or finds only a
    /// longer one, holds that root down for [`Config::tree_hold_down`] (see [`Hold`]), taking only
    /// paths no longer than the one it had. What it advertises meanwhile (another root, or itself)
    /// reaches its subtree, whose nodes do the same, so that no stale path is left when the hold
    /// ends; a root that is gone then disappears instead of being counted up hop by hop.
    pub(super) fn update_tree(&mut self) {
        self.update_trees(u64::MAX);
    }

    /// [`Node::update_tree`] for the trees of `mask` (bit `i`: tree `i`) and those whose hold-down
    /// ended: a TREE frame usually changes one or two of its entries, and the other trees' places
    /// cannot change with it.
    pub(super) fn update_trees(&mut self, mask: u64) {
        let now = self.now;
        // Borrowed field by field: the loop below changes other fields while it reads these.
        let (links, link_costs, proofs) = (&self.links, &self.link_costs, &self.proofs_heard);
        let unmeasured = Self::cost_of(UNMEASURED_LINK_COST, self.hop_cost());
        let offers: Vec<Offer<'_>> = self
            .tree_heard
            .iter()
            .filter(|(peer, _)| links.contains_key(peer))
            .map(|(peer, heard)| Offer {
                peer: *peer,
                cost: link_costs.get(peer).copied().unwrap_or(unmeasured),
                heard,
                proofs: proofs.get(peer),
            })
            .collect();
        for tree in 0..self.places.len() {
            let expired = self.holds[tree].is_some_and(|h| h.until <= now);
            if mask & (1 << tree) == 0 && !expired {
                continue;
            }
            if expired {
                self.holds[tree] = None;
            }
            let old = self.places[tree];
            let mut new = self.pick_place(tree, &offers);
            // Lost: the parent no longer offers the root (its link is gone, it follows another root
            // or takes us as its parent) and what is left is worse. A parent that still offers the
            // root, even over more hops, is followed: it holds itself to the same rule.
            let parent_offers = old.parent.is_some_and(|p| {
                offers.iter().find(|o| o.peer == p).is_some_and(|o| {
                    o.heard
                        .get(tree)
                        .is_some_and(|a| a.root == old.root && !a.child && self.proven(o, a))
                })
            });
            let lost = old.parent.is_some()
                && !parent_offers
                && if new.root == old.root {
                    new.cost > old.cost
                } else {
                    self.tree_key(tree, &new.root) > self.tree_key(tree, &old.root)
                };
            if lost && self.holds[tree].is_none() {
                self.stats.tree_holds += 1;
                // The link to the root itself is lost: the root may be gone, and its other links
                // may notice later; hold until they have (`tree_root_hold_down`).
                let hold = if old.distance <= 1 {
                    self.config.tree_root_hold_down
                } else {
                    self.config.tree_hold_down
                };
                // With `tree_feasible_successors`, also the lowest cost advertised lately.
                let advertised = self
                    .config
                    .tree_feasible_successors
                    .then(|| {
                        self.advertised[tree].feasible(&old.root, now, self.config.tree_hold_down)
                    })
                    .flatten();
                self.holds[tree] = Some(Hold {
                    root: old.root,
                    feasible: advertised.map_or(old.cost, |cost| cost.min(old.cost)),
                    until: now + hold,
                });
                new = self.pick_place(tree, &offers);
            }
            if new.root != old.root || new.parent != old.parent {
                self.settled_since[tree] = now;
                self.stats.tree_changes += 1;
                if new.root != old.root {
                    self.stats.tree_root_changes += 1;
                }
            }
            self.places[tree] = new;
        }
        // Changes are told after `tree_advert_delay`: a node often changes several times in a row
        // (a new root's wave reaching it over several links), and its links need only the last.
        if self.config.tree_advert_delay.is_zero() {
            self.flush_places();
        } else if self.tree_flush_at.is_none() {
            self.tree_flush_at = Some(now + self.config.tree_advert_delay);
        }
    }

    /// Tells every link whose view of our places is out of date.
    pub(super) fn flush_places(&mut self) {
        self.tree_flush_at = None;
        self.tell_places(false);
    }

    /// Tells every link our places (all of them with `again`, else those whose view is out of date),
    /// with the proofs it lacks. The proofs of our roots are gathered once for all links.
    pub(super) fn tell_places(&mut self, again: bool) {
        let proofs = self.our_proofs();
        let peers: Vec<NodeId> = self.links.keys().copied().collect();
        for peer in peers {
            self.tell(peer, &proofs, again);
        }
    }

    /// The best place the links offer in `tree`: the lowest root in the tree's order, then the fastest
    /// path to it (the link's cost, [`Offer::cost`], plus the cost it advertises), then the
    /// fewest hops, then the lowest parent id; this node as its own root if none is better.
    ///
    /// A dead root's paths are not advertised for ever: each node takes one more hop than the
    /// neighbor it follows, never a child (split horizon) and never beyond `hop_limit / 2` hops, so
    /// the distances of a root that is gone count up until every path to it passes the bound and the
    /// next root in the order takes over (every tree path, up to a common ancestor and down, thus
    /// fits under the hop limit).
    pub(super) fn pick_place(&self, tree: usize, offers: &[Offer<'_>]) -> Place {
        let mut best = Place {
            root: self.id,
            distance: 0,
            cost: 0,
            parent: None,
        };
        let mut best_key = self.tree_key(tree, &self.id);
        let hold = self.holds[tree];
        // Without a hold-down, a link other than the parent is taken for the root this node
        // advertises only if it advertises less than this node's feasible distance: after this
        // node's cost rose, a node of its subtree may still advertise a cost built on the lower one.
        let parent = self.places[tree].parent;
        let dual = self.config.tree_feasible_successors;
        let feasible = (dual && hold.is_none()).then(|| {
            let root = self.places[tree].root;
            self.advertised[tree]
                .feasible(&root, self.now, self.config.tree_hold_down)
                .map(|cost| (root, cost))
        });
        for offer in offers {
            let Some(heard) = offer.heard.get(tree) else {
                continue;
            };
            if heard.child || !self.proven(offer, heard) {
                continue;
            }
            let distance = heard.distance.saturating_add(1);
            if distance > self.config.hop_limit / 2 {
                continue;
            }
            let cost = heard.cost.saturating_add(offer.cost).min(MAX_TREE_COST);
            // During a hold-down, only a path no slower than the one lost or, with
            // `tree_feasible_successors`, only a feasible successor (see [`Hold`]).
            if let Some(hold) = hold
                && hold.root == heard.root
                && if dual {
                    heard.cost >= hold.feasible
                } else {
                    cost > hold.feasible
                }
            {
                continue;
            }
            if let Some(Some((root, fd))) = feasible
                && root == heard.root
                && parent != Some(offer.peer)
                && heard.cost >= fd
            {
                continue;
            }
            let key = self.tree_key(tree, &heard.root);
            if (key, cost, distance, Some(offer.peer))
                < (best_key, best.cost, best.distance, best.parent)
            {
                best_key = key;
                best = Place {
                    root: heard.root,
                    distance,
                    cost,
                    parent: Some(offer.peer),
                };
            }
        }
        best
    }

    /// [`Config::tree_hop_cost`] in milliseconds.
    fn hop_cost(&self) -> u32 {
        u32::try_from(self.config.tree_hop_cost.as_millis()).unwrap_or(MAX_TREE_COST)
    }

    /// A link's cost from its one-way latency and the hop cost, in milliseconds: at least 1 (costs
    /// grow along every path), at most [`MAX_TREE_COST`].
    fn cost_of(one_way: u32, hop: u32) -> u32 {
        one_way.saturating_add(hop).clamp(1, MAX_TREE_COST)
    }

    /// Fixes `peer`'s cost from its round-trip estimate when it has none yet or the estimate moved by
    /// more than a quarter from it (a little jitter must not reshape the trees); recomputes the trees
    /// when it changed.
    pub(super) fn refresh_link_cost(&mut self, peer: NodeId) {
        let Some(rtt) = self.rtt.get(&peer) else {
            return;
        };
        let one_way = u32::try_from(rtt.smoothed().as_millis() / 2).unwrap_or(MAX_TREE_COST);
        let cost = Self::cost_of(one_way, self.hop_cost());
        let old = self.link_costs.get(&peer).copied();
        if old.is_some_and(|old| old.abs_diff(cost) * 4 <= old) {
            return;
        }
        self.link_costs.insert(peer, cost);
        if self.policy.keeps_trees() {
            self.update_tree();
        }
    }

    /// The links a message on `tree` is pushed to: the parent and the children.
    pub(super) fn tree_links(&self, tree: usize) -> impl Iterator<Item = NodeId> + '_ {
        let parent = self.places.get(tree).and_then(|p| p.parent);
        self.links.keys().copied().filter(move |peer| {
            Some(*peer) == parent
                || self
                    .tree_heard
                    .get(peer)
                    .and_then(|h| h.get(tree))
                    .is_some_and(|a| a.child)
        })
    }

    /// The tree a message we publish travels on: the one whose root is nearest in latency (its last
    /// delivery is at most that far plus the tree's height), among the trees we are part of.
    ///
    /// A tree this node's place in changed lately (a root lost, a parent replaced) may be changing
    /// elsewhere too: settled trees are preferred, the others used only when no tree is settled.
    pub(super) fn pick_tree(&self) -> u8 {
        let settle = self.config.tree_hold_down;
        let mut best: Option<(bool, u32, usize)> = None;
        for (tree, place) in self.places.iter().enumerate() {
            let part = place.parent.is_some() || self.tree_links(tree).next().is_some();
            if !part {
                continue;
            }
            let unsettled = self.holds[tree].is_some()
                || self.now.saturating_duration_since(self.settled_since[tree]) < settle;
            let key = (unsettled, place.cost, tree);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        best.map_or(0, |(_, _, tree)| u8::try_from(tree).unwrap_or(0))
    }

    /// Whether a link's advertised root in one tree is proven: the link itself (links are
    /// authenticated by the driver), or a root of which the link gave a valid proof that is still fresh.
    /// An unproven entry counts as nothing: a node that claims a root it cannot prove attracts no tree.
    ///
    /// Distance 0 is the root itself: another node that claims it (to look adjacent to a real root's
    /// neighbours) is not believed either.
    fn proven(&self, offer: &Offer<'_>, advert: &TreeAdvert) -> bool {
        advert.root == offer.peer
            || advert.distance > 0
                && offer
                    .proofs
                    .and_then(|proofs| proofs.get(&advert.root))
                    .is_some_and(|&timestamp| self.fresh(timestamp))
    }

    /// Whether a root proof signed at `timestamp` is fresh now.
    fn fresh(&self, timestamp: Instant) -> bool {
        self.now.saturating_duration_since(timestamp) <= self.config.tree_proof_max_age
            && timestamp <= self.now + self.config.max_clock_skew
    }

    /// Root proofs from `from` (at most [`Config::trees`], checked by the caller), alone or with its
    /// entries (already held): the trees of `changed` (entries that changed) and those whose entry
    /// names a root whose proof is new are recomputed. A proof counts only for the entries of `from`
    /// that name its root, so only those trees change.
    pub(super) fn on_proofs(&mut self, from: NodeId, proofs: Vec<RootProof>, changed: u64) {
        let proven = self.take_proofs(from, proofs);
        let mask = if proven.is_empty() {
            changed
        } else {
            changed
                | self.tree_heard.get(&from).map_or(0, |adverts| {
                    tree_mask(adverts.iter().map(|a| proven.contains(&a.root)))
                })
        };
        if mask != 0 {
            self.update_trees(mask);
        }
    }

    /// Each fresh proof of `proofs` with a valid signature is kept (a proof already checked, from any
    /// link, is not checked again): the roots whose proof from `from` is new.
    fn take_proofs(&mut self, from: NodeId, proofs: Vec<RootProof>) -> Vec<NodeId> {
        let mut changed: Vec<NodeId> = Vec::new();
        for proof in proofs {
            let root = proof.root();
            let held = self.proofs_heard.get(&from).and_then(|p| p.get(&root));
            if held.is_some_and(|&timestamp| timestamp >= proof.timestamp) {
                continue;
            }
            if !self.fresh(proof.timestamp) {
                self.stats.tree_proofs_refused += 1;
                continue;
            }
            // Held by some link: the freshest held is `proofs_best`, so a later one is new.
            let best = self.proofs_best.get(&root).copied();
            let known = self.own_proof == Some(proof)
                || best == Some(proof)
                || best.is_some_and(|b| b.timestamp > proof.timestamp)
                    && self.proofs_held.get(&(root, proof.timestamp)) == Some(&proof);
            if !known {
                self.stats.tree_proofs_verified += 1;
                let signed = root_signed_bytes(&root, proof.timestamp);
                if !self
                    .verifier
                    .verify(&proof.public_key, &signed, &proof.signature)
                {
                    self.stats.tree_proofs_refused += 1;
                    continue;
                }
            }
            let proofs = self.proofs_heard.entry(from).or_default();
            // What this replaces is older than `proof`, so `proof` is the best if that was.
            let replaced = proofs.insert(root, proof.timestamp);
            let too_many = proofs.len() > 2 * self.config.trees;
            self.proofs_held
                .entry((root, proof.timestamp))
                .or_insert(proof);
            if let Some(older) = replaced {
                self.release_proof(root, older);
            }
            if self
                .proofs_best
                .get(&root)
                .is_none_or(|b| b.timestamp < proof.timestamp)
            {
                self.proofs_best.insert(root, proof);
            }
            if too_many {
                // Only the roots the link follows, and this frame's, need keeping.
                let named: Vec<NodeId> = self
                    .tree_heard
                    .get(&from)
                    .map(|h| h.iter().map(|a| a.root).collect())
                    .unwrap_or_default();
                self.prune_proofs(from, |r| *r == root || named.contains(r));
            }
            changed.push(root);
        }
        changed
    }

    /// The freshest proof this node holds of `root` (its own, signed or renewed now if needed).
    fn proof_of(&mut self, root: NodeId) -> Option<RootProof> {
        if root == self.id {
            let renew = self.config.tree_proof_max_age / 4;
            if self
                .own_proof
                .is_none_or(|p| self.now.saturating_duration_since(p.timestamp) >= renew)
            {
                self.own_proof = Some(RootProof::sign(&self.signer, self.now));
            }
            return self.own_proof;
        }
        // The freshest held: a proof is kept only if fresh when it came, so it cannot be too far in
        // the future later, and if the latest is too old, so is every other.
        self.proofs_best
            .get(&root)
            .filter(|p| self.fresh(p.timestamp))
            .copied()
    }

    /// Drops the proofs `peer` gave of the roots `keep` refuses.
    pub(super) fn prune_proofs(&mut self, peer: NodeId, keep: impl Fn(&NodeId) -> bool) {
        let Some(proofs) = self.proofs_heard.get_mut(&peer) else {
            return;
        };
        // Usually nothing goes (a link keeps following its roots): no list is built then.
        if proofs.keys().all(&keep) {
            return;
        }
        let dropped: Vec<(NodeId, Instant)> =
            proofs.extract_if(.., |root, _| !keep(root)).collect();
        self.forget_proofs(dropped.into_iter());
    }

    /// The proof of `root` signed at `timestamp`, which a link no longer names: dropped from
    /// `proofs_held` unless another link still names it.
    fn release_proof(&mut self, root: NodeId, timestamp: Instant) -> Option<RootProof> {
        let named = self
            .proofs_heard
            .values()
            .any(|p| p.get(&root) == Some(&timestamp));
        if named {
            self.proofs_held.get(&(root, timestamp)).copied()
        } else {
            self.proofs_held.remove(&(root, timestamp))
        }
    }

    /// Keeps `proofs_held` to the proofs some link names and `proofs_best` the latest held after
    /// `dropped` (roots and timestamps) left `proofs_heard`: a root whose best proof went takes the
    /// latest other link's, or none.
    pub(super) fn forget_proofs(&mut self, dropped: impl Iterator<Item = (NodeId, Instant)>) {
        for (root, timestamp) in dropped {
            let proof = self.release_proof(root, timestamp);
            if proof.is_none() || self.proofs_best.get(&root) != proof.as_ref() {
                continue;
            }
            let latest = self
                .proofs_heard
                .values()
                .filter_map(|p| p.get(&root))
                .max()
                .and_then(|&latest| self.proofs_held.get(&(root, latest)))
                .copied();
            match latest {
                Some(latest) => self.proofs_best.insert(root, latest),
                None => self.proofs_best.remove(&root),
            };
        }
    }

    /// The freshest proof we hold of each root we follow, in root order.
    fn our_proofs(&mut self) -> Vec<(NodeId, RootProof)> {
        let mut roots: Vec<NodeId> = self.places.iter().map(|p| p.root).collect();
        roots.sort();
        roots.dedup();
        roots
            .into_iter()
            .filter_map(|root| self.proof_of(root).map(|proof| (root, proof)))
            .collect()
    }

    /// Tells `peer` our places if they changed since we last told it (or always, with `again`), in a
    /// `Tree` frame with those of `proofs` (ours, [`Node::our_proofs`], in root order) it lacks; the
    /// proofs alone in a `Roots` frame if only they are new to it and cannot wait
    /// ([`Node::proofs_to_tell`]).
    fn tell(&mut self, peer: NodeId, proofs: &[(NodeId, RootProof)], again: bool) {
        let adverts = self.adverts_to_tell(peer, again);
        let proofs = self.proofs_to_tell(peer, proofs, adverts.is_some());
        match adverts {
            Some(adverts) => self.send_frame(peer, &Frame::Tree { proofs, adverts }),
            None if !proofs.is_empty() => self.send_frame(peer, &Frame::Roots(proofs)),
            None => {}
        }
    }

    /// Those of `proofs` (ours, [`Node::our_proofs`], in root order) `peer` has not had from us, or
    /// only older; noted as told.
    ///
    /// Without a `Tree` frame to ride (`with_tree` false), a newer proof of a root the link already
    /// has one of waits for the next (a change, or the periodic re-send) while the one it has is
    /// younger than half of [`Config::tree_proof_max_age`]: a root's renewal (every quarter of it)
    /// then travels in the frames the trees send anyway, not in a wave of `Roots` frames of its own.
    fn proofs_to_tell(
        &mut self,
        peer: NodeId,
        proofs: &[(NodeId, RootProof)],
        with_tree: bool,
    ) -> Vec<RootProof> {
        let before = self.proofs_told.get(&peer);
        let same = before.is_some_and(|t| {
            t.len() == proofs.len()
                && t.iter()
                    .zip(proofs)
                    .all(|(told, (root, proof))| *told == (*root, proof.timestamp))
        });
        if same {
            return Vec::new();
        }
        let renew_by = self.config.tree_proof_max_age / 2;
        let mut send = Vec::new();
        let mut told = Vec::with_capacity(proofs.len());
        for (root, proof) in proofs {
            let had = before.and_then(|t| {
                t.binary_search_by(|(r, _)| r.cmp(root))
                    .ok()
                    .map(|i| t[i].1)
            });
            match had {
                Some(at) if at >= proof.timestamp => told.push((*root, proof.timestamp)),
                Some(at) if !with_tree && self.now.saturating_duration_since(at) < renew_by => {
                    told.push((*root, at));
                }
                _ => {
                    send.push(*proof);
                    told.push((*root, proof.timestamp));
                }
            }
        }
        if before != Some(&told) {
            self.proofs_told.insert(peer, told);
        }
        send
    }

    /// Tells `peer` our places if they changed since we last told it (or always, with `again`), with
    /// the proofs of their roots it lacks.
    pub(super) fn tell_place(&mut self, peer: NodeId, again: bool) {
        let proofs = self.our_proofs();
        self.tell(peer, &proofs, again);
    }

    /// Our places as `peer` is to hear them, if they changed since we last told it (or always, with
    /// `again`); noted as told.
    fn adverts_to_tell(&mut self, peer: NodeId, again: bool) -> Option<Vec<TreeAdvert>> {
        let adverts: Vec<TreeAdvert> = self
            .places
            .iter()
            .map(|p| TreeAdvert {
                root: p.root,
                distance: p.distance,
                cost: p.cost,
                child: p.parent == Some(peer),
            })
            .collect();
        if !again && self.tree_told.get(&peer) == Some(&adverts) {
            return None;
        }
        if self.config.tree_feasible_successors {
            let window = self.config.tree_hold_down;
            for (advertised, place) in self.advertised.iter_mut().zip(&self.places) {
                advertised.told(place.root, place.cost, self.now, window);
            }
        }
        self.tree_told.insert(peer, adverts.clone());
        self.stats.tree_frames_sent += 1;
        if again {
            self.stats.tree_frames_refreshed += 1;
        }
        Some(adverts)
    }
}
