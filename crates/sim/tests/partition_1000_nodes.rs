//! 1,000 nodes cut into two random halves for 60 s: after the heal the mesh is one component again and
//! broadcasts reach every node.

mod common;

use sim::Scenario;

#[test]
fn the_mesh_heals_after_a_partition() {
    let (report, context) = common::run(Scenario::Partition);
    assert_eq!(
        report.components,
        Some(1),
        "components after the heal: {context}"
    );
    assert_eq!(
        report.delivery_ratio,
        Some(1.0),
        "delivery after the heal: {context}"
    );
}
