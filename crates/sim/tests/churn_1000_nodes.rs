//! 1,000 nodes while 20% of them crash and restart (same key, 5-20 s later) over 100 s: broadcasts reach
//! every node that stayed up (and every restarted node from 10 s after its return), lookups between
//! stable nodes succeed, and the mesh ends in one piece.

mod common;

use sim::Scenario;

#[test]
fn broadcasts_and_lookups_reach_every_node_under_churn() {
    let (report, context) = common::run(Scenario::Churn);
    assert_eq!(report.delivery_ratio, Some(1.0), "delivery: {context}");
    assert!(common::at_most(report.ldh, 12.0), "ldh: {context}");
    assert_eq!(
        report.lookup_success,
        Some(1.0),
        "lookup success: {context}"
    );
    assert!(
        common::at_most(report.lookup_hops_p99, 6.0),
        "lookup hops p99: {context}"
    );
    assert_eq!(report.components, Some(1), "components: {context}");
}
