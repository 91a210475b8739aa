//! 1,000 nodes while 20% of them crash and restart (same key, 5-20 s later) over 100 s: broadcasts reach
//! every node that stayed up, lookups between stable nodes succeed, and the mesh ends in one piece.

mod common;

use sim::Scenario;

#[test]
fn lookups_succeed_and_the_mesh_stays_whole_under_churn() {
    let (report, context) = common::run(Scenario::Churn);
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

/// Known to fail: a restarted node can wait 20-70 s for its first link (each refusal raises its dial
/// backoff even while it has free slots), and the messages published meanwhile miss it (delivery about
/// 0.9987); the tree's depth (ldh about 20) also exceeds 12. Ignored until mesh-core's refusal backoff
/// is fixed. Run it with `cargo test -p sim -- --ignored`.
#[test]
#[ignore = "open (issue 4): delivery 0.9987 and ldh 20 under churn"]
fn broadcasts_reach_every_node_under_churn() {
    let (report, context) = common::run(Scenario::Churn);
    assert_eq!(report.delivery_ratio, Some(1.0), "delivery: {context}");
    assert!(report.ldh.is_some_and(|h| h <= 12), "ldh: {context}");
}
