//! The neighbor lists a node tells each of its up links ([`Neighbors`]): built for all links at once.
//!
//! Link `p` is told the other links, the union of their own links, of their second levels and a
//! sample of their third levels, each without the levels above. Built one link at a time, that is
//! one sort of the other links' lists per link and per level; [`announcements`] sorts every link's
//! lists once, each id with the links that gave it (a bit mask) and the links that gave it to a
//! level above, and then takes for link `p` the ids some other link gave and no other link put
//! higher: bit tests, without a search per link. [`announcement_for`] is the one-link definition,
//! kept as the reference the tests compare with and for the case the shortcut does not cover (more
//! up links than a list holds).

use alloc::vec::Vec;

use kademlia_core::NodeId;

use crate::frame::{MAX_FOURTH, MAX_ID_LIST, MAX_THIRD, Neighbors};

/// One up link and the lists it told us.
pub(super) struct Lists<'a> {
    pub(super) id: NodeId,
    pub(super) neighbors: &'a [NodeId],
    pub(super) second: &'a [NodeId],
    pub(super) third: &'a [NodeId],
}

/// The lists for every link of `ups`, in its order: each the same as [`announcement_for`]'s.
pub(super) fn announcements<'a>(local: NodeId, ups: &[Lists<'a>]) -> Vec<Neighbors> {
    if ups.len() > MAX_ID_LIST {
        // Then each link's `links` is not "every other link" (the list is cut at MAX_ID_LIST), and
        // the links do not fit the masks below.
        return (0..ups.len())
            .map(|p| announcement_for(local, ups, p))
            .collect();
    }
    // Every level's ids, sorted, each once, with the links that gave it (bit `i`: `ups[i]`).
    let gathered = |level: fn(&Lists<'a>) -> &'a [NodeId]| {
        let mut ids: Vec<(NodeId, u64)> = ups
            .iter()
            .enumerate()
            .flat_map(|(i, l)| level(l).iter().map(move |id| (*id, 1u64 << i)))
            .collect();
        ids.sort_unstable_by_key(|(id, _)| *id);
        ids.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 |= later.1;
            }
            same
        });
        ids
    };
    let second_all = gathered(|l| l.neighbors);
    let third_all = gathered(|l| l.second);
    let fourth_all = gathered(|l| l.third);
    let mut above: Vec<NodeId> = ups.iter().map(|l| l.id).collect();
    above.push(local);
    above.sort_unstable();
    let givers = |level: &[(NodeId, u64)], id: &NodeId| {
        level
            .binary_search_by_key(id, |(x, _)| *x)
            .map_or(0, |i| level[i].1)
    };
    // For each id of a level, once for all links: whether a level above names it for every link
    // (the links and us), and which links give it to a level above (for link `p` it is in that
    // level when a link other than `p` does).
    let second: Vec<(NodeId, u64)> = second_all
        .into_iter()
        .filter(|(id, _)| above.binary_search(id).is_err())
        .collect();
    let third: Vec<(NodeId, u64, u64)> = third_all
        .into_iter()
        .filter(|(id, _)| above.binary_search(id).is_err())
        .map(|(id, by)| (id, by, givers(&second, &id)))
        .collect();
    let fourth: Vec<(NodeId, u64, u64)> = fourth_all
        .into_iter()
        .filter(|(id, _)| above.binary_search(id).is_err())
        .map(|(id, by)| {
            let upper = givers(&second, &id)
                | third
                    .binary_search_by_key(&id, |t| t.0)
                    .map_or(0, |i| third[i].1);
            (id, by, upper)
        })
        .collect();
    (0..ups.len())
        .map(|p| {
            let others = !(1u64 << p);
            let links: Vec<NodeId> = ups
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != p)
                .map(|(_, l)| l.id)
                .collect();
            let mut second_p: Vec<NodeId> = second
                .iter()
                .filter(|(_, by)| by & others != 0)
                .map(|(id, _)| *id)
                .collect();
            let mut third_p: Vec<NodeId> = third
                .iter()
                .filter(|(_, by, upper)| by & others != 0 && upper & others == 0)
                .map(|(id, _, _)| *id)
                .collect();
            // The lowest id of each first byte (see `finish`).
            let mut fourth_p: Vec<NodeId> = Vec::new();
            for (id, by, upper) in &fourth {
                if by & others == 0 || upper & others != 0 {
                    continue;
                }
                if fourth_p
                    .last()
                    .is_none_or(|last| last.as_bytes()[0] != id.as_bytes()[0])
                {
                    fourth_p.push(*id);
                }
            }
            second_p.truncate(MAX_ID_LIST);
            third_p.truncate(MAX_THIRD);
            fourth_p.truncate(MAX_FOURTH);
            Neighbors {
                links,
                second: second_p,
                third: third_p,
                fourth: fourth_p,
            }
        })
        .collect()
}

/// The lists for link `p` of `ups`, one link at a time: the definition.
fn announcement_for(local: NodeId, ups: &[Lists<'_>], p: usize) -> Neighbors {
    let others: Vec<&Lists<'_>> = ups
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != p)
        .map(|(_, l)| l)
        .take(MAX_ID_LIST)
        .collect();
    let links: Vec<NodeId> = others.iter().map(|l| l.id).collect();
    let mut second: Vec<NodeId> = Vec::new();
    let mut third: Vec<NodeId> = Vec::new();
    let mut fourth: Vec<NodeId> = Vec::new();
    for l in &others {
        second.extend_from_slice(l.neighbors);
        third.extend_from_slice(l.second);
        fourth.extend_from_slice(l.third);
    }
    let mut above: Vec<NodeId> = links.clone();
    above.extend(ups.get(p).map(|l| l.id));
    above.push(local);
    above.sort_unstable();
    for level in [&mut second, &mut third, &mut fourth] {
        level.sort_unstable();
        level.dedup();
    }
    finish(links, &above, second, third, fourth)
}

/// The announcement from the sorted, deduplicated unions of the other links' levels: each level
/// without the ids of the levels above it, the fourth sampled, each cut to its bound.
fn finish(
    links: Vec<NodeId>,
    above: &[NodeId],
    mut second: Vec<NodeId>,
    mut third: Vec<NodeId>,
    mut fourth: Vec<NodeId>,
) -> Neighbors {
    second.retain(|x| above.binary_search(x).is_err());
    third.retain(|x| above.binary_search(x).is_err() && second.binary_search(x).is_err());
    // The lowest id of each first byte that no level above holds: a sample spread over the id
    // space, which is what greedy routing needs from far away. One pass over the sorted list; the
    // exclusion is checked only until a byte has its id.
    let mut last_byte = None;
    fourth.retain(|x| {
        let byte = x.as_bytes()[0];
        if last_byte == Some(byte) {
            return false;
        }
        let keep = above.binary_search(x).is_err()
            && second.binary_search(x).is_err()
            && third.binary_search(x).is_err();
        if keep {
            last_byte = Some(byte);
        }
        keep
    });
    fourth.truncate(MAX_FOURTH);
    second.truncate(MAX_ID_LIST);
    third.truncate(MAX_THIRD);
    Neighbors {
        links,
        second,
        third,
        fourth,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Ids from a small space, so that the links' lists overlap each other and the links.
    fn id(n: u8) -> NodeId {
        let mut bytes = [0u8; 20];
        bytes[0] = n % 16;
        bytes[1] = n;
        NodeId::from_bytes(bytes)
    }

    fn ids(max: usize) -> impl Strategy<Value = Vec<NodeId>> {
        prop::collection::vec(any::<u8>().prop_map(id), 0..max)
    }

    proptest! {
        /// All links at once give what one link at a time gives, whatever the links told us (lists
        /// unsorted, repeated, naming us or each other).
        #[test]
        fn all_at_once_is_one_at_a_time(
            local in any::<u8>(),
            links in prop::collection::vec((any::<u8>(), ids(8), ids(24), ids(64)), 0..9),
        ) {
            let mut links = links;
            links.sort_by_key(|l| l.0);
            links.dedup_by_key(|l| l.0);
            let ups: Vec<Lists<'_>> = links
                .iter()
                .map(|(n, neighbors, second, third)| Lists {
                    id: id(*n),
                    neighbors,
                    second,
                    third,
                })
                .collect();
            let all = announcements(id(local), &ups);
            prop_assert_eq!(all.len(), ups.len());
            for (p, announcement) in all.iter().enumerate() {
                prop_assert_eq!(announcement, &announcement_for(id(local), &ups, p));
            }
        }
    }
}
