//! The same seed gives the same report (every measured value, every counter), so a printed seed replays
//! a failure exactly; another seed gives another run.

use sim::{Scenario, ScenarioArgs};

fn report(scenario: Scenario, seed: u64) -> String {
    let mut args = ScenarioArgs::new(scenario);
    args.nodes = 60;
    args.seed = seed;
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
