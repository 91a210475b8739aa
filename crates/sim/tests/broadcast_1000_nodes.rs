//! 1,000 nodes, 1% frame loss, 5% of the nodes crashing during the run: every broadcast reaches every
//! live node, over a tree (low redundancy, bounded depth), and the mesh stays in one piece.

mod common;

use sim::Scenario;

#[test]
fn broadcast_reaches_every_live_node_over_a_shallow_tree() {
    let (report, context) = common::run(Scenario::Broadcast);
    assert_eq!(report.delivery_ratio, Some(1.0), "delivery: {context}");
    assert_eq!(report.components, Some(1), "components: {context}");
    assert!(common::at_most(report.rmr, 0.2), "rmr: {context}");
    assert!(report.ldh.is_some_and(|h| h <= 12), "ldh: {context}");
}
