//! 1,000 nodes, 1% frame loss, 5% of them attacking from the start (tree hijack, false neighbour claims,
//! future-dated floods past the seen-cache bound, dropping everything they should forward): every honest
//! broadcast still reaches every honest live node (issue 14's target).
//!
//! The attackers are in `sim::attack`. Before gossip-core kept future-dated messages from pushing the
//! seen-cache floor past the present and made roots prove themselves, and before mesh-core stopped
//! taking unconfirmed neighbour claims, the attacks bit: delivery about 0.77 at seed 1.

mod common;

use sim::Scenario;

#[test]
fn honest_broadcasts_reach_every_honest_node_while_5_percent_attack() {
    let (report, context) = common::run(Scenario::BroadcastAttack);
    assert_eq!(
        report.delivery_ratio,
        Some(1.0),
        "honest delivery: {context}"
    );
    assert_eq!(report.components, Some(1), "components: {context}");
}
