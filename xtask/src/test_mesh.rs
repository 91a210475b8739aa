//! `cargo xtask test-mesh [--scenario NAME|all] [--nodes N] [--json] [--release]`: the mesh as
//! real processes through real faults (apps/test-mesh).
//!
//! It builds `mesh-node`, `test-mesh` and `signaling-server` once (the dev profile by default;
//! `--release` for the benchmark figures; `--prebuilt` takes the dev binaries `cargo test` built),
//! then runs `test-mesh`, which starts a signaling server and the nodes for each scenario, prints a
//! table row per scenario (one JSON object per scenario with `--json`) and exits non-zero when one
//! fails. The `partition` scenario needs root (network namespaces).

use crate::util::{cargo, run};

/// Flags of `cargo xtask test-mesh`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A scenario, or `all` (repeatable): join-broadcast, direct, churn, hot-churn,
    /// server-restart, partition, large-message, forged, mesh-signaling, server-failover.
    #[arg(long, default_value = "all")]
    pub scenario: Vec<String>,
    /// Nodes per scenario.
    #[arg(long, default_value_t = 10)]
    pub nodes: usize,
    /// One JSON object per scenario on stdout.
    #[arg(long)]
    pub json: bool,
    /// Build and run optimised binaries (for figures; CI uses the dev build of its tests).
    #[arg(long)]
    pub release: bool,
    /// Seed of the scenarios' choices (which nodes are killed).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print every report of every node.
    #[arg(long)]
    pub verbose: bool,
    /// Use the dev binaries already built by `cargo test --workspace` (which builds mesh-node,
    /// test-mesh and signaling-server for their integration tests) instead of building them
    /// with another feature set (`cargo xtask ci` does this).
    #[arg(long, conflicts_with = "release")]
    pub prebuilt: bool,
}

/// Entry point of the `test-mesh` task.
pub fn run_task(args: Args) -> Result<(), String> {
    let mut build = cargo();
    build.args([
        "build",
        "--locked",
        "-p",
        "test-mesh",
        "-p",
        "signaling-server",
        "--bins",
    ]);
    if args.release {
        build.arg("--release");
    }
    if !args.prebuilt {
        run("build test-mesh", &mut build)?;
    }
    let bin = crate::util::target_dir().join(if args.release { "release" } else { "debug" });
    let mut cmd = std::process::Command::new(bin.join("test-mesh"));
    cmd.arg("--node-bin")
        .arg(bin.join("mesh-node"))
        .arg("--server-bin")
        .arg(bin.join("signaling-server"))
        .args(["--nodes", &args.nodes.to_string()])
        .args(["--seed", &args.seed.to_string()]);
    for scenario in &args.scenario {
        cmd.args(["--scenario", scenario]);
    }
    if args.json {
        cmd.arg("--json");
    }
    if args.verbose {
        cmd.arg("--verbose");
    }
    run("test-mesh", &mut cmd)
}
