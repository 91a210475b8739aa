//! 1,000 nodes, 1% frame loss, 5% of the nodes crashing during the run: every broadcast reaches every
//! live node, over a tree (low redundancy, bounded depth), and the mesh stays in one piece.

mod common;

use sim::Scenario;

#[test]
fn broadcast_reaches_every_live_node_cheaply() {
    let (report, context) = common::run(Scenario::Broadcast);
    assert_eq!(report.delivery_ratio, Some(1.0), "delivery: {context}");
    assert_eq!(report.components, Some(1), "components: {context}");
    assert!(common::at_most(report.rmr, 0.2), "rmr: {context}");
}

/// The depth target. Known to fail: the shared rooted tree is 19-22 hops from end to end at
/// 1,000 nodes (the mesh's own diameter is about 16; flood's ldh is 16 too), so this stays ignored until
/// the topology or per-origin trees bring it down. Run it with `cargo test -p sim -- --ignored`.
#[test]
#[ignore = "open (issue 4): ldh is 19-22 at 1,000 nodes, target 12"]
fn broadcast_last_delivery_hop_is_at_most_12() {
    let (report, context) = common::run(Scenario::Broadcast);
    assert!(report.ldh.is_some_and(|h| h <= 12), "ldh: {context}");
}
