//! Shared by the scenario tests: the run and a failure message that names the seed.

#![allow(dead_code)]

use sim::{Report, Scenario, ScenarioArgs, Strategy};

/// The seed of a test run: `SIM_SEED` if set, else a fixed one, so that CI is reproducible and a failure
/// can be replayed (and other seeds explored) with the same command.
pub fn seed() -> u64 {
    std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Run `scenario` at 1,000 nodes over mesh-core with the scenario's defaults.
pub fn run(scenario: Scenario) -> (Report, String) {
    run_strategy(scenario, Strategy::Plumtree)
}

/// [`run`] with broadcasts spread by `strategy`.
pub fn run_strategy(scenario: Scenario, strategy: Strategy) -> (Report, String) {
    let mut args = ScenarioArgs::new(scenario);
    args.nodes = 1_000;
    args.seed = seed();
    args.strategy = strategy;
    let run = std::panic::catch_unwind(|| sim::mesh::run(&args));
    let report = match run {
        Ok(Ok(report)) => report,
        Ok(Err(err)) => panic!("{err} (seed {})", args.seed),
        Err(panic) => {
            eprintln!("panicked at seed {}", args.seed);
            std::panic::resume_unwind(panic)
        }
    };
    let context = format!(
        "seed {seed}; replay: cargo xtask sim --scenario {name} --nodes 1000 --seed {seed} --strategy {strategy}\n{table}",
        seed = args.seed,
        name = scenario.name(),
        strategy = strategy.name(),
        table = report.table(),
    );
    eprintln!("{context}");
    (report, context)
}

/// `value` is present and at most `max`.
pub fn at_most(value: Option<f64>, max: f64) -> bool {
    value.is_some_and(|v| v <= max)
}

/// Asserts each `(what, value, bound)` of `exact` (`value` is `Some(bound)`) and of `at_most` (`value`
/// is present and at most `bound`); a failure names `what` and the run's `context`.
pub fn assert_bounds(
    context: &str,
    exact: &[(&str, Option<f64>, f64)],
    upper: &[(&str, Option<f64>, f64)],
) {
    for &(what, value, bound) in exact {
        assert_eq!(value, Some(bound), "{what}: {context}");
    }
    for &(what, value, bound) in upper {
        assert!(at_most(value, bound), "{what}: {context}");
    }
}
