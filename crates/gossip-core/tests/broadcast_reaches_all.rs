//! 100 nodes on a random graph of degree about 5, 10-100 ms latency, 1% of all frames lost: 30
//! broadcasts from random origins reach every node, cheaply (RMR) and over short paths (last delivery
//! hop), for several seeds.
//!
//! RMR is measured over all 30 messages, including the first ones that build the tree:
//! RMR = payload transmissions / (30 × (receivers − 1)) − 1, where receivers = all 100 nodes (the origin
//! included), and payload transmissions count first pushes, retries, GRAFT answers and reroutes.

mod common;

use std::time::Duration;

use common::Sim;
use gossip_core::Config;
use rand::RngExt;

const NODES: usize = 100;
const DEGREE: usize = 5;
const BROADCASTS: usize = 30;

struct Outcome {
    rmr: f64,
    last_delivery_hop: u8,
    delivery_ratio: f64,
    grafts: u64,
}

fn run(seed: u64) -> Outcome {
    run_with(seed, Config::default())
}

fn run_with(seed: u64, config: Config) -> Outcome {
    let mut sim = Sim::new(seed, NODES, DEGREE, config);
    let mut ids = Vec::new();
    for i in 0..BROADCASTS {
        let origin = sim.rng().random_range(0..NODES);
        ids.push(sim.publish(origin, format!("message {i} from {origin}").into_bytes()));
        let next = sim.now() + Duration::from_millis(1_000);
        sim.run_until(next);
    }
    // Time for the last repairs (retries, GRAFTs).
    let end = sim.now() + Duration::from_secs(30);
    sim.run_until(end);

    let mut delivered = 0usize;
    let mut last_delivery_hop = 0u8;
    for (n, id) in ids.iter().enumerate() {
        sim.assert_reached(*id, 0..NODES, &format!("seed {seed}: broadcast {n}"));
        let broadcast = &sim.broadcasts[id];
        assert!(
            !broadcast.receivers.contains_key(&broadcast.origin),
            "seed {seed}: broadcast {n} delivered to its own origin"
        );
        delivered += broadcast.receivers.len();
        last_delivery_hop =
            last_delivery_hop.max(*broadcast.receivers.values().max().unwrap_or(&0));
    }
    assert_eq!(
        sim.duplicate_deliveries, 0,
        "seed {seed}: a message was delivered twice"
    );
    let transmissions = sim.payload_transmissions() as f64;
    let rmr = transmissions / (BROADCASTS * (NODES - 1)) as f64 - 1.0;
    let delivery_ratio = delivered as f64 / (BROADCASTS * (NODES - 1)) as f64;
    println!(
        "seed {seed}: RMR {rmr:.3}, last delivery hop {last_delivery_hop}, delivery ratio {delivery_ratio:.3} \
         (sends {}, retries {}, graft answers {}, reroutes {}, grafts {}, prunes {}, parent swaps {}, \
         links made eager again {}, frames {} lost {})",
        sim.sum(|s| s.payload_sends),
        sim.sum(|s| s.payload_retries),
        sim.sum(|s| s.payload_graft_responses),
        sim.sum(|s| s.payload_reroutes),
        sim.sum(|s| s.grafts_sent),
        sim.sum(|s| s.prunes_sent),
        sim.sum(|s| s.parent_swaps),
        sim.sum(|s| s.eager_restored),
        sim.frames_sent(),
        sim.frames_lost(),
    );
    assert_eq!(
        sim.sum(|s| s.dropped()) - sim.sum(|s| s.dropped_unknown_link),
        0,
        "seed {seed}: honest frames dropped"
    );
    Outcome {
        rmr,
        last_delivery_hop,
        delivery_ratio,
        grafts: sim.sum(|s| s.grafts_sent),
    }
}

/// Every node got every message, none more than 14 hops from its origin.
fn assert_delivered_shallow(seed: u64, outcome: &Outcome) {
    assert_eq!(outcome.delivery_ratio, 1.0, "seed {seed}");
    assert!(
        outcome.last_delivery_hop < 15,
        "seed {seed}: last delivery hop {} >= 15",
        outcome.last_delivery_hop
    );
}

fn check(seed: u64) {
    let outcome = run(seed);
    assert_delivered_shallow(seed, &outcome);
    assert!(
        outcome.rmr < 0.5,
        "seed {seed}: RMR {:.3} >= 0.5",
        outcome.rmr
    );
}

#[test]
fn seed_1() {
    check(1);
}

#[test]
fn seed_2() {
    check(2);
}

#[test]
fn seed_3() {
    check(3);
}

#[test]
fn seed_4() {
    check(4);
}

#[test]
fn seed_5() {
    check(5);
}

#[test]
fn seed_6() {
    check(6);
}

#[test]
fn same_seed_same_run() {
    let a = run(7);
    let b = run(7);
    assert_eq!(a.rmr, b.rmr, "seed 7");
    assert_eq!(a.last_delivery_hop, b.last_delivery_hop, "seed 7");
}

/// Each GRAFT repairs a push that did not arrive, and adds a tree edge whose cycle the next
/// duplicates cut. Cuts made at once for different messages could split the tree, and the split
/// then made more GRAFTs with every message: before the fixes of docs/decisions.md §36, 5 of these 24
/// seeds made 35 to 392 GRAFTs in a run (with 100 ms first retries, 2 seeds: 138 and 150). Now at most
/// 18 (seed 18), and the tree's depth stays bounded.
#[test]
fn the_tree_stays_whole_over_many_seeds() {
    let mut worst = (0, 0);
    for seed in 1..=24 {
        let outcome = run(seed);
        assert_delivered_shallow(seed, &outcome);
        worst = worst.max((outcome.grafts, seed));
    }
    assert!(worst.0 <= 30, "seed {}: {} GRAFTs", worst.1, worst.0);
}
