//! 1,000 nodes; 1,000 records put by random nodes; then 30% of the nodes crash without notice and as
//! many new ones join; then 1,000 gets of random records from random live nodes (issue 15): every put
//! is stored, every get finds the record with its value within the time, and no record is
//! lost (each is still held by a live node).

mod common;

use sim::Scenario;

#[test]
fn records_put_before_a_30_percent_churn_are_all_found() {
    let (report, context) = common::run(Scenario::Dht);
    common::assert_bounds(
        &context,
        &[
            ("put success", report.put_success, 1.0),
            ("get success", report.get_success, 1.0),
            ("records lost", report.records_lost.map(|n| n as f64), 0.0),
        ],
        &[
            ("get ms p50", report.get_ms_p50, 500.0),
            ("get ms p99", report.get_ms_p99, 2000.0),
        ],
    );
    assert_eq!(report.components, Some(1), "components: {context}");
}
