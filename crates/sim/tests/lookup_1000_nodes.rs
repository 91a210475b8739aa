//! 1,000 nodes, 10% crashing without notice after the mesh settles: every lookup (`find_node`, the
//! lookup users call; `lookup_*`) of a live node finds it in few rounds and within the time, and
//! every direct message to a node without a link is routed to it in few hops.

mod common;

use sim::Scenario;

#[test]
fn lookups_and_routed_messages_reach_every_live_node() {
    let (report, context) = common::run(Scenario::Lookup);
    common::assert_bounds(
        &context,
        &[
            ("lookup success", report.lookup_success, 1.0),
            ("direct delivery", report.direct_delivery_ratio, 1.0),
        ],
        &[
            ("lookup hops p50", report.lookup_hops_p50, 3.0),
            ("lookup hops p99", report.lookup_hops_p99, 6.0),
            ("lookup ms p50", report.lookup_ms_p50, 500.0),
            ("lookup ms p99", report.lookup_ms_p99, 2000.0),
            ("direct hops p50", report.direct_hops_p50, 8.0),
            ("direct hops p99", report.direct_hops_p99, 16.0),
        ],
    );
    assert_eq!(report.components, Some(1), "components: {context}");
}
