//! Who holds which id, in which room, and how to reach them.
//!
//! # Introductions: the XOR-closest K without an O(N) scan
//!
//! Each room keeps its members in a `BTreeMap` keyed by `(distance key, connection id)`,
//! where the distance key is the id's 160 bits (or SHA-1 of a non-hex compatibility id).
//! All keys sharing a bit prefix form one contiguous range of that map, so the map is a
//! binary trie whose subtrees are ranges. The K XOR-closest keys to a target are found by
//! walking that trie from the root: at each depth, if the subtree holds at most the number
//! still needed, take it whole; otherwise descend first into the child on the target's side
//! of the bit, then into the other child for what is still missing. This is exact, and each
//! visited subtree costs one range lookup (O(log N)) plus at most `need + 1` steps, so a
//! join costs O(160 · (log N + K)) in the worst case and about O(log N · (log N + K)) for
//! random ids, independent of the room's size. Random introductions pick the first member at
//! or after a random key (O(log N) each). Leaves tell only the peers a member was
//! introduced to or by (at most [`MAX_INTRODUCED`] per member), never the whole room.
//!
//! # Ids ground near a victim
//!
//! Anyone can make ids near a given id (keys are free; a 16-bit shared prefix costs 65,536
//! key generations), so the closest peers alone would let one host that joins many such ids be
//! most of a victim's introduction. An introduction therefore holds at most
//! `max_introduced_per_source` peers that connected from one source address: the closest are
//! taken from the (up to) [`CANDIDATES`]·K nearest, skipping a source's extra ones, and the random
//! peers (always drawn when the room has more members) obey the same cap.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use p2pmesh_base::introduce::{Members, Rule, distance};
use tokio::sync::mpsc;

use crate::source::Source;

/// Most introductions remembered per member (to tell them when it leaves).
pub(crate) const MAX_INTRODUCED: usize = 32;

/// At most how many times K nearest members are looked at to find K closest within the
/// per-source cap (a host holds at most `max_connections_per_source` ids, 64 by default).
pub(crate) const CANDIDATES: usize = 16;

type Key = [u8; 20];

/// Where a member's socket is.
#[derive(Debug, Clone)]
pub(crate) enum At {
    /// On this server: its outgoing queue.
    Local(mpsc::Sender<Utf8Bytes>),
    /// On another server of the cluster (its id), reached through Redis.
    Remote(Arc<str>),
}

/// A joined connection, of this server or (in a cluster) of another.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) conn: u64,
    pub(crate) room: Arc<str>,
    key: Key,
    source: Source,
    pub(crate) at: At,
    /// The peers it was introduced to or by (kept for local members only: a remote member's
    /// server keeps its list).
    introduced: VecDeque<Arc<str>>,
}

/// Whom to tell that a member joined or left: a local queue, or a peer on another server.
#[derive(Debug)]
pub(crate) enum Tell {
    Local(mpsc::Sender<Utf8Bytes>),
    /// The peer `id` on the server `server`.
    Remote {
        server: Arc<str>,
        id: Arc<str>,
    },
}

/// A member of another server, as the cluster announces it.
#[derive(Debug, Clone)]
pub(crate) struct RemoteMember {
    pub(crate) server: Arc<str>,
    pub(crate) conn: u64,
    pub(crate) id: Arc<str>,
    pub(crate) room: Arc<str>,
    pub(crate) source: Source,
}

#[derive(Debug, Default)]
struct Room {
    members: BTreeMap<(Key, u64), (Arc<str>, Source)>,
}

/// All joined connections.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    peers: HashMap<Arc<str>, Member>,
    rooms: HashMap<Arc<str>, Room>,
}

/// The result of a successful join.
#[derive(Debug)]
pub(crate) struct Introductions {
    /// The introduced peers (closest first, then random).
    pub(crate) peers: Vec<Arc<str>>,
    /// Where to send their `peer_joined`.
    pub(crate) tell: Vec<Tell>,
}

impl Registry {
    /// Register `id` for connection `conn` (from `source`), unless another connection holds it;
    /// its introduction follows `rule` with at most `per_source` peers from one source.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn join(
        &mut self,
        id: Arc<str>,
        conn: u64,
        room: Arc<str>,
        tx: mpsc::Sender<Utf8Bytes>,
        source: Source,
        rule: Rule,
        per_source: usize,
        rng: &mut (impl rand::Rng + ?Sized),
    ) -> Result<Introductions, ()> {
        match self.peers.get(&id).map(|m| &m.at) {
            Some(At::Local(_)) => return Err(()),
            // The cluster's claim (made before this call) says its holder is gone: the mirror
            // had not heard yet.
            Some(At::Remote(_)) => {
                self.remove(&id);
            }
            None => {}
        }
        let key = transport::distance_key(&id);
        let room_entry = self.rooms.entry(room.clone()).or_default();
        let peers = introduce_capped(
            &RoomMembers(&room_entry.members),
            &key,
            rule,
            per_source,
            rng,
        );
        room_entry.members.insert((key, conn), (id.clone(), source));
        let mut tell = Vec::with_capacity(peers.len());
        for p in &peers {
            if let Some(m) = self.peers.get_mut(p) {
                match &m.at {
                    At::Local(tx) => {
                        tell.push(Tell::Local(tx.clone()));
                        remember(&mut m.introduced, id.clone());
                    }
                    At::Remote(server) => tell.push(Tell::Remote {
                        server: server.clone(),
                        id: p.clone(),
                    }),
                }
            }
        }
        let mut introduced = VecDeque::with_capacity(peers.len());
        for p in &peers {
            remember(&mut introduced, p.clone());
        }
        self.peers.insert(
            id,
            Member {
                conn,
                room,
                key,
                source,
                at: At::Local(tx),
                introduced,
            },
        );
        Ok(Introductions { peers, tell })
    }

    /// Unregister `id` if this server's connection `conn` holds it; returns the peers to tell
    /// (`peer_left`).
    pub(crate) fn leave(&mut self, id: &str, conn: u64) -> Vec<Tell> {
        match self.peers.get(id) {
            Some(m) if m.conn == conn && matches!(m.at, At::Local(_)) => {}
            _ => return Vec::new(),
        }
        let Some((id, member)) = self.remove(id) else {
            return Vec::new();
        };
        let mut tell = Vec::with_capacity(member.introduced.len());
        for p in &member.introduced {
            if let Some(other) = self.peers.get_mut(p) {
                match &other.at {
                    At::Local(tx) => {
                        other.introduced.retain(|x| *x != id);
                        tell.push(Tell::Local(tx.clone()));
                    }
                    At::Remote(server) => tell.push(Tell::Remote {
                        server: server.clone(),
                        id: p.clone(),
                    }),
                }
            }
        }
        tell
    }

    /// Remove `id` from the maps (its room, and the room if it empties).
    fn remove(&mut self, id: &str) -> Option<(Arc<str>, Member)> {
        let (id, member) = self.peers.remove_entry(id)?;
        if let Some(room) = self.rooms.get_mut(&member.room) {
            room.members.remove(&(member.key, member.conn));
            if room.members.is_empty() {
                self.rooms.remove(&member.room);
            }
        }
        Some((id, member))
    }

    /// Remember that the local member `id` was introduced to or by `other` (a peer of another
    /// server), so that it hears when `other` leaves.
    pub(crate) fn remember_introduced(&mut self, id: &str, other: Arc<str>) {
        if let Some(m) = self.peers.get_mut(id)
            && matches!(m.at, At::Local(_))
        {
            remember(&mut m.introduced, other);
        }
    }

    /// Forget that the local member `id` was introduced to `other`.
    pub(crate) fn forget_introduced(&mut self, id: &str, other: &str) {
        if let Some(m) = self.peers.get_mut(id) {
            m.introduced.retain(|x| &**x != other);
        }
    }

    /// Add a member of another server (announced through the cluster). A local member with the
    /// same id keeps it (the cluster's claim makes that a passing disagreement); an older entry
    /// of another server is replaced.
    pub(crate) fn insert_remote(&mut self, member: RemoteMember) {
        match self.peers.get(&member.id) {
            Some(m) if matches!(m.at, At::Local(_)) => return,
            Some(m)
                if m.conn == member.conn
                    && matches!(&m.at, At::Remote(s) if *s == member.server) =>
            {
                return;
            }
            Some(_) => {
                self.remove(&member.id);
            }
            None => {}
        }
        let key = transport::distance_key(&member.id);
        self.rooms
            .entry(member.room.clone())
            .or_default()
            .members
            .insert((key, member.conn), (member.id.clone(), member.source));
        self.peers.insert(
            member.id,
            Member {
                conn: member.conn,
                room: member.room,
                key,
                source: member.source,
                at: At::Remote(member.server),
                introduced: VecDeque::new(),
            },
        );
    }

    /// Remove the member `id` of server `server` (connection `conn`), if the mirror holds it.
    pub(crate) fn remove_remote(&mut self, server: &str, conn: u64, id: &str) {
        let theirs = self
            .peers
            .get(id)
            .is_some_and(|m| m.conn == conn && matches!(&m.at, At::Remote(s) if &**s == server));
        if theirs {
            self.remove(id);
        }
    }

    /// Whether a member of another server is one that `keep(server, id)` rejects (what
    /// [`Registry::drop_remote`] would remove).
    pub(crate) fn has_remote_outside(&self, keep: impl Fn(&str, &str) -> bool) -> bool {
        self.peers
            .iter()
            .any(|(id, m)| matches!(&m.at, At::Remote(s) if !keep(s, id)))
    }

    /// Remove every member of another server that `keep(server, id)` rejects (servers gone from
    /// the cluster, members missing from its record); returns the local members to tell, with
    /// the id that left, and forgets those ids.
    pub(crate) fn drop_remote(
        &mut self,
        keep: impl Fn(&str, &str) -> bool,
    ) -> Vec<(mpsc::Sender<Utf8Bytes>, Arc<str>)> {
        let gone: Vec<Arc<str>> = self
            .peers
            .iter()
            .filter(|(id, m)| matches!(&m.at, At::Remote(s) if !keep(s, id)))
            .map(|(id, _)| id.clone())
            .collect();
        if gone.is_empty() {
            return Vec::new();
        }
        for id in &gone {
            self.remove(id);
        }
        let gone: std::collections::HashSet<Arc<str>> = gone.into_iter().collect();
        let mut tell = Vec::new();
        for m in self.peers.values_mut() {
            let At::Local(tx) = &m.at else { continue };
            m.introduced.retain(|p| {
                if gone.contains(p) {
                    tell.push((tx.clone(), p.clone()));
                    false
                } else {
                    true
                }
            });
        }
        tell
    }

    /// This server's members, as the cluster announces them.
    pub(crate) fn local_members(&self, server: &Arc<str>) -> Vec<RemoteMember> {
        self.peers
            .iter()
            .filter(|(_, m)| matches!(m.at, At::Local(_)))
            .map(|(id, m)| RemoteMember {
                server: server.clone(),
                conn: m.conn,
                id: id.clone(),
                room: m.room.clone(),
                source: m.source,
            })
            .collect()
    }

    /// How many members of other servers the mirror holds.
    pub(crate) fn remote_len(&self) -> usize {
        self.peers
            .values()
            .filter(|m| matches!(m.at, At::Remote(_)))
            .count()
    }

    /// How many members `room` has.
    pub(crate) fn room_len(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |r| r.members.len())
    }

    /// Whether a connection of this server holds `id`.
    pub(crate) fn holds(&self, id: &str) -> bool {
        self.peers
            .get(id)
            .is_some_and(|m| matches!(m.at, At::Local(_)))
    }

    /// Where `id` is, if it is joined.
    pub(crate) fn peers_at(&self, id: &str) -> Option<&At> {
        self.peers.get(id).map(|m| &m.at)
    }

    /// Where `to` is, if it is joined in `room`.
    pub(crate) fn route(&self, room: &str, to: &str) -> Option<&At> {
        self.peers
            .get(to)
            .filter(|m| &*m.room == room)
            .map(|m| &m.at)
    }

    /// How many members each room has (in no order, without the rooms' names).
    pub(crate) fn room_sizes(&self) -> Vec<usize> {
        self.rooms.values().map(|room| room.members.len()).collect()
    }

    /// How many rooms exist.
    pub(crate) fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// How many ids are held (by this server and, in a cluster, by the others).
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }
}

/// [`p2pmesh_base::introduce::introduce`] with at most `per_source` peers from one source: the
/// closest from the (up to) [`CANDIDATES`]·K nearest, then random ones under the same cap.
fn introduce_capped(
    members: &RoomMembers<'_>,
    target: &Key,
    rule: Rule,
    per_source: usize,
    rng: &mut (impl rand::Rng + ?Sized),
) -> Vec<Arc<str>> {
    let per_source = per_source.max(1);
    let mut taken: Vec<(Source, usize)> = Vec::new();
    let mut admit = |source: Source| -> bool {
        match taken.iter_mut().find(|(s, _)| *s == source) {
            Some((_, n)) if *n >= per_source => false,
            Some((_, n)) => {
                *n += 1;
                true
            }
            None => {
                taken.push((source, 1));
                true
            }
        }
    };
    let mut out: Vec<(Arc<str>, Source)> = Vec::with_capacity(rule.closest + rule.random);
    // Look at the K nearest, then (while sources over their cap were skipped) twice as many,
    // up to CANDIDATES·K.
    let mut looked = 0;
    let mut look_at = rule.closest;
    loop {
        let candidates = members.closest(target, look_at);
        let found = candidates.len();
        for (id, source) in candidates.into_iter().skip(looked) {
            if out.len() == rule.closest {
                break;
            }
            if admit(source) {
                out.push((id, source));
            }
        }
        looked = found;
        let limit = rule.closest.saturating_mul(CANDIDATES);
        if out.len() >= rule.closest || found < look_at || look_at >= limit {
            break;
        }
        look_at = look_at.saturating_mul(2).min(limit);
    }
    let chosen_closest = out.len();
    let want = rule
        .random
        .min(members.len().saturating_sub(chosen_closest));
    let mut attempts = 0;
    while out.len() < chosen_closest + want && attempts < rule.attempts {
        attempts += 1;
        let Some((id, source)) = members.pick(rng) else {
            break;
        };
        if !out.iter().any(|(p, _)| *p == id) && admit(source) {
            out.push((id, source));
        }
    }
    out.into_iter().map(|(id, _)| id).collect()
}

fn remember(list: &mut VecDeque<Arc<str>>, id: Arc<str>) {
    if list.contains(&id) {
        return;
    }
    if list.len() == MAX_INTRODUCED {
        list.pop_front();
    }
    list.push_back(id);
}

fn bit(key: &Key, depth: usize) -> bool {
    key[depth / 8] & (0x80 >> (depth % 8)) != 0
}

fn set_bit(key: &mut Key, depth: usize) {
    key[depth / 8] |= 0x80 >> (depth % 8);
}

/// The largest key with the prefix `lo[..depth]` (all later bits set).
fn subtree_max(lo: &Key, depth: usize) -> Key {
    let mut hi = *lo;
    for d in depth..160 {
        if d % 8 == 0 {
            hi[d / 8..].iter_mut().for_each(|b| *b = 0xff);
            break;
        }
        set_bit(&mut hi, d);
    }
    hi
}

/// A room's members as the introduction rule ([`p2pmesh_base::introduce`]) queries them: the closest
/// by a walk of the key tree (O(K log N)), a random one as the first member at or after a random key
/// (O(log N)).
struct RoomMembers<'a>(&'a BTreeMap<(Key, u64), (Arc<str>, Source)>);

impl Members for RoomMembers<'_> {
    type Peer = (Arc<str>, Source);

    fn len(&self) -> usize {
        self.0.len()
    }

    fn closest(&self, target: &Key, k: usize) -> Vec<(Arc<str>, Source)> {
        let mut peers = Vec::with_capacity(k);
        xor_closest(self.0, target, k, &mut peers);
        peers.sort_by_key(|(key, _)| distance(key, target));
        peers.into_iter().map(|(_, id)| id).collect()
    }

    fn pick<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> Option<(Arc<str>, Source)> {
        let mut start = [0u8; 20];
        rng.fill_bytes(&mut start);
        self.0
            .range((Bound::Included((start, 0)), Bound::Unbounded))
            .next()
            .or_else(|| self.0.iter().next())
            .map(|(_, id)| id.clone())
    }
}

/// Push the `need` members closest to `target` by XOR (unordered) onto `out`.
fn xor_closest(
    members: &BTreeMap<(Key, u64), (Arc<str>, Source)>,
    target: &Key,
    need: usize,
    out: &mut Vec<(Key, (Arc<str>, Source))>,
) {
    collect(members, target, [0u8; 20], 0, need, out);
}

fn collect(
    members: &BTreeMap<(Key, u64), (Arc<str>, Source)>,
    target: &Key,
    lo: Key,
    depth: usize,
    need: usize,
    out: &mut Vec<(Key, (Arc<str>, Source))>,
) {
    if need == 0 {
        return;
    }
    let hi = subtree_max(&lo, depth);
    let range = members.range((lo, 0)..=(hi, u64::MAX));
    let count = range.clone().take(need + 1).count();
    if count == 0 {
        return;
    }
    if count <= need || depth >= 160 {
        out.extend(range.take(need).map(|((k, _), id)| (*k, id.clone())));
        return;
    }
    let mut near = lo;
    let mut far = lo;
    if bit(target, depth) {
        set_bit(&mut near, depth);
    } else {
        set_bit(&mut far, depth);
    }
    let before = out.len();
    collect(members, target, near, depth + 1, need, out);
    let got = out.len() - before;
    collect(members, target, far, depth + 1, need - got, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lcg(u64);
    impl Lcg {
        fn key(&mut self) -> Key {
            let mut k = [0u8; 20];
            for b in k.iter_mut() {
                self.0 = self
                    .0
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *b = (self.0 >> 56) as u8;
            }
            k
        }
    }

    fn local() -> Source {
        Source::of(std::net::IpAddr::from([127, 0, 0, 1]))
    }

    #[test]
    fn xor_closest_matches_brute_force() {
        let mut rng = Lcg(42);
        for n in [0usize, 1, 3, 5, 6, 50, 1000] {
            let mut members = BTreeMap::new();
            for i in 0..n {
                let mut k = rng.key();
                if i % 7 == 3 {
                    // Clustered keys share long prefixes, the hard case for the walk.
                    k[..15].fill(0xab);
                }
                members.insert((k, i as u64), (Arc::<str>::from(hex::encode(k)), local()));
            }
            for _ in 0..20 {
                let mut target = rng.key();
                if n > 0 && rng.key()[0].is_multiple_of(2) {
                    target[..15].fill(0xab);
                }
                for k in [1usize, 5, 8] {
                    let mut got = Vec::new();
                    xor_closest(&members, &target, k, &mut got);
                    let mut got: Vec<Key> = got
                        .into_iter()
                        .map(|(k, _)| distance(&k, &target))
                        .collect();
                    got.sort();
                    let mut all: Vec<Key> =
                        members.keys().map(|(k, _)| distance(k, &target)).collect();
                    all.sort();
                    all.truncate(k);
                    assert_eq!(got, all, "n={n} k={k}");
                }
            }
        }
    }

    #[test]
    fn a_held_id_is_refused_and_only_its_holder_unregisters_it() {
        let mut reg = Registry::default();
        let (tx, _rx) = mpsc::channel(4);
        let mut rk = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(7);
        let rule = Rule {
            closest: 5,
            random: 3,
            attempts: 12,
        };
        let id: Arc<str> = Arc::from("a".repeat(40));
        let room: Arc<str> = Arc::from("default");
        assert!(
            reg.join(
                id.clone(),
                1,
                room.clone(),
                tx.clone(),
                local(),
                rule,
                99,
                &mut rk
            )
            .is_ok()
        );
        assert!(
            reg.join(
                id.clone(),
                2,
                room.clone(),
                tx.clone(),
                local(),
                rule,
                99,
                &mut rk
            )
            .is_err()
        );
        assert!(reg.leave(&id, 2).is_empty());
        assert!(reg.route("default", &id).is_some());
        let other: Arc<str> = Arc::from("b".repeat(40));
        let intro = reg
            .join(
                other.clone(),
                3,
                room.clone(),
                tx,
                local(),
                rule,
                99,
                &mut rk,
            )
            .expect("join");
        assert_eq!(intro.peers, vec![id.clone()]);
        assert!(reg.route("other-room", &id).is_none());
        assert_eq!(reg.leave(&id, 1).len(), 1);
        assert!(reg.route("default", &id).is_none());
        assert_eq!(reg.len(), 1);
    }

    #[test]
    fn one_source_fills_at_most_its_share_of_an_introduction() {
        let mut rng = Lcg(9);
        let mut rk = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(3);
        let rule = Rule {
            closest: 8,
            random: 3,
            attempts: 12,
        };
        let attacker = Source::of(std::net::IpAddr::from([10, 0, 0, 66]));
        let target = rng.key();
        let mut reg = Registry::default();
        let (tx, _rx) = mpsc::channel(4);
        let room: Arc<str> = Arc::from("default");
        // 40 ids from one host, each sharing 12 bytes with the target; 20 honest ids from 20 hosts.
        for i in 0..40u64 {
            let mut k = rng.key();
            k[..12].copy_from_slice(&target[..12]);
            let id: Arc<str> = Arc::from(hex::encode(k));
            reg.join(id, i, room.clone(), tx.clone(), attacker, rule, 2, &mut rk)
                .expect("join");
        }
        for i in 0..20u8 {
            let id: Arc<str> = Arc::from(hex::encode(rng.key()));
            let honest = Source::of(std::net::IpAddr::from([10, 1, 0, i]));
            reg.join(
                id,
                100 + u64::from(i),
                room.clone(),
                tx.clone(),
                honest,
                rule,
                2,
                &mut rk,
            )
            .expect("join");
        }
        let victim: Arc<str> = Arc::from(hex::encode(target));
        let victim_source = Source::of(std::net::IpAddr::from([10, 2, 0, 1]));
        let intro = reg
            .join(victim, 999, room, tx, victim_source, rule, 2, &mut rk)
            .expect("join");
        let from_attacker = intro
            .peers
            .iter()
            .filter(|p| reg.peers.get(&***p).is_some_and(|m| m.conn < 40))
            .count();
        assert!(from_attacker <= 2, "{from_attacker} of {:?}", intro.peers);
        assert_eq!(
            intro.peers.len(),
            rule.closest + rule.random,
            "{:?}",
            intro.peers
        );
    }

    #[test]
    fn members_of_other_servers_are_introduced_routed_and_dropped_with_their_server() {
        let mut reg = Registry::default();
        let mut rk = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(11);
        let rule = Rule {
            closest: 5,
            random: 0,
            attempts: 0,
        };
        let room: Arc<str> = Arc::from("default");
        let server_b: Arc<str> = Arc::from("b");
        let remote: Arc<str> = Arc::from("c".repeat(40));
        reg.insert_remote(RemoteMember {
            server: server_b.clone(),
            conn: 7,
            id: remote.clone(),
            room: room.clone(),
            source: local(),
        });
        assert!(!reg.holds(&remote), "held by another server, not this one");
        assert!(matches!(reg.route("default", &remote), Some(At::Remote(s)) if *s == server_b));
        // A local join is introduced to it, and told to tell it through the cluster.
        let (tx, mut rx) = mpsc::channel(4);
        let local_id: Arc<str> = Arc::from("d".repeat(40));
        let intro = reg
            .join(
                local_id.clone(),
                1,
                room.clone(),
                tx,
                local(),
                rule,
                99,
                &mut rk,
            )
            .expect("join");
        assert_eq!(intro.peers, vec![remote.clone()]);
        assert!(
            matches!(&intro.tell[..], [Tell::Remote { server, id }] if *server == server_b && *id == remote)
        );
        assert_eq!((reg.len(), reg.remote_len()), (2, 1));
        // Its leave on its server (an event) removes it only for the connection that held it.
        reg.remove_remote("b", 8, &remote);
        assert_eq!(reg.remote_len(), 1);
        // Server b is gone: its member leaves, and the local member introduced to it is told.
        assert!(reg.has_remote_outside(|server, _| server != "b"));
        assert!(!reg.has_remote_outside(|server, _| server == "b"));
        let told = reg.drop_remote(|server, _| server != "b");
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].1, remote);
        assert!(told[0].0.try_send(Utf8Bytes::from_static("x")).is_ok());
        assert!(rx.try_recv().is_ok());
        assert_eq!(
            (reg.len(), reg.remote_len(), reg.room_len("default")),
            (1, 0, 1)
        );
        // Its id may now join here (the cluster's claim said its holder is gone), replacing
        // a stale mirror entry if one is left.
        reg.insert_remote(RemoteMember {
            server: server_b,
            conn: 9,
            id: remote.clone(),
            room: room.clone(),
            source: local(),
        });
        let (tx2, _rx2) = mpsc::channel(4);
        reg.join(remote.clone(), 2, room, tx2, local(), rule, 99, &mut rk)
            .expect("a stale remote entry gives way to the claimed local join");
        assert!(reg.holds(&remote));
        assert_eq!(reg.remote_len(), 0);
    }
}
