//! The simulator's scenarios at 1,000 nodes, each with its targets asserted. One test binary, so that
//! the test harness runs two at a time on CI's two cores (each run is single-threaded; as six
//! binaries they ran one after another). Run one with a filter, e.g.
//! `cargo test -p sim --test scenarios_1000_nodes dht`.

mod common;

mod attack {
    //! 1,000 nodes, 1% frame loss, 5% of them attacking from the start (tree hijack, false neighbour claims,
    //! future-dated floods past the seen-cache bound, dropping everything they should forward): every honest
    //! broadcast still reaches every honest live node (issue 14's target).
    //!
    //! The attackers are in `sim::attack`. Before gossip-core kept future-dated messages from pushing the
    //! seen-cache floor past the present and made roots prove themselves, and before mesh-core stopped
    //! taking unconfirmed neighbour claims, the attacks bit: delivery about 0.77 at seed 1.

    use sim::Scenario;

    use super::common;

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
}

mod broadcast {
    //! 1,000 nodes, 1% frame loss, 5% of the nodes crashing during the run: every broadcast reaches every
    //! live node, over trees (low redundancy, few hops), not much later than flooding would on the same
    //! mesh and seed, and the mesh stays in one piece.

    use sim::{Scenario, Strategy};

    use super::common;

    /// Largest ratio of the trees' broadcast latency to flooding's, p50 and p99, on the same mesh and
    /// seed. The target is 1.25 at p99; what the trees reach today is 1.34 / 1.84 at seed 1
    /// (docs/decisions.md §35, `cargo xtask broadcast-study`), so these bounds catch a regression, not
    /// the target. Before issue 17 the ratios were 1.77 / 5.63.
    const LATENCY_RATIO: (f64, f64) = (1.6, 2.6);

    #[test]
    fn broadcast_reaches_every_live_node_cheaply_and_in_few_hops() {
        let (report, context) = common::run(Scenario::Broadcast);
        assert_eq!(report.delivery_ratio, Some(1.0), "delivery: {context}");
        assert_eq!(report.components, Some(1), "components: {context}");
        assert!(common::at_most(report.rmr, 0.2), "rmr: {context}");
        // Plumtree's last delivery hop (each broadcast's, averaged; see the report's docs).
        assert!(common::at_most(report.ldh, 12.0), "ldh: {context}");

        let (flood, flood_context) = common::run_strategy(Scenario::Broadcast, Strategy::Flood);
        assert_eq!(
            flood.delivery_ratio,
            Some(1.0),
            "flood delivery: {flood_context}"
        );
        let ratio = |trees: Option<f64>, flood: Option<f64>| trees.zip(flood).map(|(t, f)| t / f);
        let p50 = ratio(report.latency_ms_p50, flood.latency_ms_p50);
        let p99 = ratio(report.latency_ms_p99, flood.latency_ms_p99);
        eprintln!("latency against flooding: p50 {p50:?}, p99 {p99:?}");
        assert!(
            common::at_most(p50, LATENCY_RATIO.0),
            "latency p50 {p50:?} x flooding's: {context}\n{flood_context}"
        );
        assert!(
            common::at_most(p99, LATENCY_RATIO.1),
            "latency p99 {p99:?} x flooding's: {context}\n{flood_context}"
        );
    }
}

mod churn {
    //! 1,000 nodes while 20% of them crash and restart (same key, 5-20 s later) over 100 s: broadcasts reach
    //! every node that stayed up (and every restarted node from 10 s after its return), lookups between
    //! stable nodes succeed, and the mesh ends in one piece.

    use sim::Scenario;

    use super::common;

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
}

mod dht {
    //! 1,000 nodes; 1,000 records put by random nodes; then 30% of the nodes crash without notice and as
    //! many new ones join; then 1,000 gets of random records from random live nodes (issue 15): every put
    //! is stored, every get finds the record with its value within the time, and no record is
    //! lost (each is still held by a live node).

    use sim::Scenario;

    use super::common;

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
}

mod lookup {
    //! 1,000 nodes, 10% crashing without notice after the mesh settles: every lookup (`find_node`, the
    //! lookup users call; `lookup_*`) of a live node finds it in few rounds and within the time, and
    //! every direct message to a node without a link is routed to it in few hops.

    use sim::Scenario;

    use super::common;

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
}

mod partition {
    //! 1,000 nodes cut into two random halves for 60 s: after the heal the mesh is one component again and
    //! broadcasts reach every node.

    use sim::Scenario;

    use super::common;

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
}
