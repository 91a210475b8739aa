//! 1,000 nodes, 1% frame loss, 5% of the nodes crashing during the run: every broadcast reaches every
//! live node, over trees (low redundancy, few hops), and the mesh stays in one piece.

mod common;

use sim::Scenario;

#[test]
fn broadcast_reaches_every_live_node_cheaply_and_in_few_hops() {
    let (report, context) = common::run(Scenario::Broadcast);
    assert_eq!(report.delivery_ratio, Some(1.0), "delivery: {context}");
    assert_eq!(report.components, Some(1), "components: {context}");
    assert!(common::at_most(report.rmr, 0.2), "rmr: {context}");
    // Plumtree's last delivery hop (each broadcast's, averaged; see the report's docs).
    assert!(common::at_most(report.ldh, 12.0), "ldh: {context}");
}
