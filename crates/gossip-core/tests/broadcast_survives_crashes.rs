//! Nodes that crash in the middle of a broadcast (their links go down at their neighbours one to three
//! seconds later) do not stop the others from receiving it, nor later broadcasts: with Plumtree (the
//! default configuration) and with the rooted trees that production uses (mesh-core's default).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Sim;
use gossip_core::{Config, MessageId};
use rand::RngExt;

const NODES: usize = 100;
const DEGREE: usize = 5;

/// The live nodes reachable from `origin` over links between live nodes.
fn reachable(sim: &Sim, links: &[BTreeSet<usize>], origin: usize) -> BTreeSet<usize> {
    let mut seen = BTreeSet::from([origin]);
    let mut stack = vec![origin];
    while let Some(node) = stack.pop() {
        for &peer in &links[node] {
            if !sim.crashed(peer) && seen.insert(peer) {
                stack.push(peer);
            }
        }
    }
    seen
}

fn assert_reached(sim: &Sim, links: &[BTreeSet<usize>], id: MessageId, seed: u64, what: &str) {
    let live = reachable(sim, links, sim.broadcasts[&id].origin);
    sim.assert_reached(id, live, &format!("seed {seed}: {what} (live nodes)"));
}

/// The gossip configuration mesh-core runs by default: twelve rooted breadth-first trees.
fn rooted() -> Config {
    Config {
        rooted_tree: true,
        trees: 12,
        tree_refresh_interval: Duration::from_secs(8),
        lazy_flush_interval: Duration::from_millis(250),
        hop_limit: 32,
        ..Config::default()
    }
}

/// Two tests of one scenario: `$plain` on the default configuration, `$rooted` on [`rooted`].
macro_rules! on_both_configs {
    ($scenario:ident: $plain:ident, $rooted:ident) => {
        #[test]
        fn $plain() {
            $scenario(Config::default());
        }

        #[test]
        fn $rooted() {
            $scenario(rooted());
        }
    };
}

/// A network of `seed` on `config` after five warm-up broadcasts: the network, its links, and a
/// random origin for the next broadcast.
fn warmed_up(seed: u64, config: &Config) -> (Sim, Vec<BTreeSet<usize>>, usize) {
    let mut sim = Sim::new(seed, NODES, DEGREE, config.clone());
    let links = sim.links.clone();
    for i in 0..5 {
        let origin = sim.rng().random_range(0..NODES);
        sim.publish(origin, format!("warm-up {i}").into_bytes());
        let next = sim.now() + Duration::from_secs(1);
        sim.run_until(next);
    }
    let origin = sim.rng().random_range(0..NODES);
    (sim, links, origin)
}

// The relays with the most tree links crash the moment the message reaches them: they acknowledge
// nothing and forward nothing, so their whole subtree must be repaired by announcements and GRAFTs
// and their parents' pushes rerouted.
on_both_configs!(tree_relays_crashing_on_receipt_with: tree_relays_crashing_on_receipt, tree_relays_crashing_on_receipt_rooted);

fn tree_relays_crashing_on_receipt_with(config: Config) {
    for seed in 1..=5 {
        let (mut sim, links, origin) = warmed_up(seed, &config);
        let mut relays: Vec<usize> = (0..NODES).filter(|n| *n != origin).collect();
        relays.sort_by_key(|n| std::cmp::Reverse(sim.node(*n).eager_links().count()));
        let victims: Vec<usize> = relays.into_iter().take(3).collect();

        // Publishing only queues the origin's frames, so the crashes are armed before any relay sees
        // the message.
        let id = sim.publish(origin, b"the one that matters".to_vec());
        for &victim in &victims {
            sim.crash_on_receipt(victim, id);
        }
        let end = sim.now() + Duration::from_secs(20);
        sim.run_until(end);

        for &victim in &victims {
            assert!(
                sim.crashed(victim),
                "seed {seed}: relay {victim} never got the message"
            );
        }
        assert_reached(&sim, &links, id, seed, "the broadcast");
        let live_receivers = sim.broadcasts[&id]
            .receivers
            .keys()
            .filter(|n| !sim.crashed(**n))
            .count();
        println!(
            "seed {seed}: crashed relays {victims:?}, delivered to {live_receivers}/{} live nodes, \
             reroutes {}, grafts {}",
            sim.live() - 1,
            sim.sum(|s| s.payload_reroutes),
            sim.sum(|s| s.grafts_sent),
        );

        // The tree heals: later broadcasts reach everyone still reachable.
        for i in 0..5 {
            let origin = loop {
                let candidate = sim.rng().random_range(0..NODES);
                if !sim.crashed(candidate) {
                    break candidate;
                }
            };
            let id = sim.publish(origin, format!("after {i}").into_bytes());
            let next = sim.now() + Duration::from_secs(2);
            sim.run_until(next);
            let end = sim.now() + Duration::from_secs(10);
            sim.run_until(end);
            assert_reached(
                &sim,
                &links,
                id,
                seed,
                &format!("broadcast {i} after the crashes"),
            );
        }
    }
}

// 5% of the nodes crash at random moments while a broadcast spreads, on both configurations.
on_both_configs!(random_nodes_crashing_mid_broadcast_with: random_nodes_crashing_mid_broadcast, random_nodes_crashing_mid_broadcast_rooted);

fn random_nodes_crashing_mid_broadcast_with(config: Config) {
    for seed in 11..=15 {
        let (mut sim, links, origin) = warmed_up(seed, &config);
        let id = sim.publish(origin, b"spreading".to_vec());
        let mut victims = BTreeSet::new();
        while victims.len() < NODES / 20 {
            let victim = sim.rng().random_range(0..NODES);
            if victim != origin {
                victims.insert(victim);
            }
        }
        let start = sim.now();
        for &victim in &victims {
            let at = start + Duration::from_millis(sim.rng().random_range(0..300));
            sim.run_until(at);
            sim.crash(victim);
        }
        let end = sim.now() + Duration::from_secs(20);
        sim.run_until(end);
        assert_reached(&sim, &links, id, seed, "the broadcast");
        println!(
            "seed {seed}: crashed {victims:?}, delivered to {} nodes",
            sim.broadcasts[&id].receivers.len()
        );
    }
}
