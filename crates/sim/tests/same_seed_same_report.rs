//! The same seed gives the same report (every measured value, every counter), so a printed seed replays
//! a failure exactly; another seed gives another run.

use sim::{Scenario, ScenarioArgs};

fn report(scenario: Scenario, seed: u64) -> String {
    sharded_report(scenario, seed, 0)
}

/// The report of a 60-node run over `shards` shards (0: sequential).
fn sharded_report(scenario: Scenario, seed: u64, shards: usize) -> String {
    let mut args = ScenarioArgs::new(scenario);
    args.nodes = 60;
    args.seed = seed;
    args.shards = shards;
    match sim::mesh::run(&args) {
        Ok(r) => format!(
            "{}\n{}",
            r.deterministic().table(),
            r.deterministic().to_json()
        ),
        Err(err) => panic!("{err} (seed {seed})"),
    }
}

#[test]
fn a_seed_replays_byte_for_byte() {
    for scenario in [Scenario::Broadcast, Scenario::Lookup] {
        let a = report(scenario, 5);
        assert_eq!(a, report(scenario, 5), "seed 5, {}", scenario.name());
        assert_ne!(a, report(scenario, 6), "seeds 5 and 6, {}", scenario.name());
    }
}

/// A sharded run is the same on one shard and on two (two threads): joins, loss, crashes and routed
/// signalling (broadcast), restarts (churn), a cut and its healing (partition). It is another run than
/// the sequential one. (The lookup and DHT scenarios, slower, take the same engine paths.)
#[test]
fn a_sharded_run_is_the_same_on_one_shard_and_on_two() {
    for scenario in [Scenario::Broadcast, Scenario::Churn, Scenario::Partition] {
        let one = sharded_report(scenario, 5, 1);
        assert_eq!(one, sharded_report(scenario, 5, 2), "{}", scenario.name());
        if scenario == Scenario::Broadcast {
            assert_ne!(one, report(scenario, 5), "{}", scenario.name());
        }
    }
}

/// The attack scenario's attackers share state, so it runs only sequentially.
#[test]
fn the_attack_scenario_refuses_shards() {
    let mut args = ScenarioArgs::new(Scenario::BroadcastAttack);
    args.nodes = 60;
    args.shards = 2;
    assert!(sim::mesh::run(&args).is_err());
}
