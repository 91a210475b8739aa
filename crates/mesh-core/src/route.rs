//! Next-hop choice for routed messages: greedy by XOR distance with neighbor-of-neighbor lookahead,
//! never revisiting a node, backtracking when every link has been visited.

use alloc::vec::Vec;

use kademlia_core::{Distance, NodeId};

/// A link as the router sees it: the peer, the peer's own links, and their links (its last
/// [`Neighbors`](crate::frame::Neighbors)).
pub type LinkView<'a> = (NodeId, &'a [NodeId], &'a [NodeId]);

/// How good `link` is as the next hop toward `dst`: the distance to `dst` of the link itself or of the
/// best unvisited node within two more hops behind it. `excluded` is sorted: this node and the visited.
fn score(dst: &NodeId, link: &LinkView<'_>, excluded: &[NodeId]) -> Distance {
    let mut best = link.0.distance(dst);
    for n in link.1.iter().chain(link.2) {
        let d = n.distance(dst);
        // The cheap comparison first: most candidates are not better than the best so far.
        if d < best && excluded.binary_search(n).is_err() {
            best = d;
        }
    }
    best
}

/// `me` and `visited`, sorted and deduplicated, for [`score`]'s binary searches (every routed message
/// scores ~5 links × ~30 candidates against a path of up to `hop_limit` nodes).
fn excluded(me: &NodeId, visited: &[NodeId]) -> Vec<NodeId> {
    let mut out = Vec::with_capacity(visited.len() + 1);
    out.extend_from_slice(visited);
    out.push(*me);
    out.sort_unstable();
    out.dedup();
    out
}

/// Links ranked as next hops toward `dst`, best first, skipping visited ones: the link to `dst` itself,
/// then a link whose neighbor is `dst`, then by the closest distance to `dst` reachable through each.
pub fn ranked(
    me: &NodeId,
    dst: &NodeId,
    links: &[LinkView<'_>],
    visited: &[NodeId],
) -> Vec<NodeId> {
    let excluded = excluded(me, visited);
    let mut scored: Vec<(Distance, NodeId)> = links
        .iter()
        .filter(|l| !visited.contains(&l.0))
        .map(|l| (score(dst, l, &excluded), l.0))
        .collect();
    scored.sort();
    scored.into_iter().map(|(_, id)| id).collect()
}

/// The next hop toward `dst`, or `None` when every link has been visited (the caller backtracks).
///
/// Greedy routing alone stops at a local minimum (no link closer to `dst` than this node); here the
/// message goes on to the best unvisited link anyway, so that together with backtracking the search is a
/// depth-first search of the mesh guided by XOR distance, bounded by the hop limit.
pub fn next_hop(
    me: &NodeId,
    dst: &NodeId,
    links: &[LinkView<'_>],
    visited: &[NodeId],
) -> Option<NodeId> {
    if links.iter().any(|l| l.0 == *dst) {
        return Some(*dst);
    }
    let excluded = excluded(me, visited);
    links
        .iter()
        .filter(|l| !visited.contains(&l.0))
        .map(|l| (score(dst, l, &excluded), l.0))
        .min()
        .map(|(_, id)| id)
}

/// Where a message that cannot go forward goes back to: the node this one first received it from.
/// `None` at the origin.
pub fn parent(me: &NodeId, path: &[NodeId]) -> Option<NodeId> {
    let first = path.iter().position(|p| p == me)?;
    first.checked_sub(1).map(|i| path[i])
}

/// The path without its detours: each node once, in order of first visit, loops cut out. Reversed, it is
/// the route a reply retraces.
pub fn simple_path(path: &[NodeId]) -> Vec<NodeId> {
    let mut out: Vec<NodeId> = Vec::with_capacity(path.len());
    for p in path {
        if let Some(i) = out.iter().position(|q| q == p) {
            out.truncate(i + 1);
        } else {
            out.push(*p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        let mut b = [0u8; 20];
        b[0] = n;
        NodeId::from_bytes(b)
    }

    #[test]
    fn direct_link_wins() {
        let me = id(0);
        let links: Vec<LinkView<'_>> = alloc::vec![(id(0x80), &[], &[]), (id(0x10), &[], &[])];
        assert_eq!(next_hop(&me, &id(0x10), &links, &[]), Some(id(0x10)));
    }

    #[test]
    fn neighbor_of_neighbor_is_used() {
        let me = id(0);
        let via_a = [id(0x41)];
        // b is closer to the target 0x40 than a, but a's neighbor is the target itself.
        let links: Vec<LinkView<'_>> = alloc::vec![(id(0xc0), &via_a, &[]), (id(0x44), &[], &[])];
        assert_eq!(next_hop(&me, &id(0x41), &links, &[]), Some(id(0xc0)));
    }

    #[test]
    fn second_level_is_used() {
        let me = id(0);
        let far = [id(0x41)];
        let links: Vec<LinkView<'_>> = alloc::vec![(id(0xc0), &[], &far), (id(0x44), &[], &[])];
        assert_eq!(next_hop(&me, &id(0x41), &links, &[]), Some(id(0xc0)));
    }

    #[test]
    fn greedy_then_escape_then_backtrack() {
        let me = id(0x10);
        let target = id(0x11);
        // No link is closer to the target than `me`: still forward to the best unvisited one.
        let links: Vec<LinkView<'_>> = alloc::vec![(id(0x80), &[], &[]), (id(0x40), &[], &[])];
        assert_eq!(next_hop(&me, &target, &links, &[me]), Some(id(0x40)));
        // all visited: None, and the parent is where the message first came from
        let path = [id(1), id(0x80), me, id(0x40), me];
        assert_eq!(next_hop(&me, &target, &links, &path), None);
        assert_eq!(parent(&me, &path), Some(id(0x80)));
        assert_eq!(parent(&id(1), &path), None);
    }

    #[test]
    fn ranked_orders_links() {
        let me = id(0);
        let links: Vec<LinkView<'_>> = alloc::vec![
            (id(0x80), &[], &[]),
            (id(0x41), &[], &[]),
            (id(0x60), &[], &[])
        ];
        assert_eq!(
            ranked(&me, &id(0x40), &links, &[]),
            alloc::vec![id(0x41), id(0x60), id(0x80)]
        );
    }

    #[test]
    fn simple_path_cuts_loops() {
        let p = [id(1), id(2), id(3), id(2), id(4)];
        assert_eq!(simple_path(&p), alloc::vec![id(1), id(2), id(4)]);
    }
}
