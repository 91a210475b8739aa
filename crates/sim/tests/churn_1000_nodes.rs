//! 1,000 nodes while 20% of them crash and restart (same key, 5-20 s later) over 100 s: broadcasts reach
//! every node that stayed up (and every restarted node from 10 s after its return), lookups between
//! stable nodes succeed, and the mesh ends in one piece.

mod common;

use sim::Scenario;

#[test]
fn broadcasts_and_lookups_reach_every_node_under_churn() {
    let (report, context) = common::run(Scenario::Churn);
    common::assert_bounds(
        &context,
        &[
            ("delivery", report.delivery_ratio, 1.0),
            ("lookup success", report.lookup_success, 1.0),
        ],
        &[
            ("ldh", report.ldh, 12.0),
            ("lookup hops p99", report.lookup_hops_p99, 6.0),
        ],
    );
    assert_eq!(report.components, Some(1), "components: {context}");
}
