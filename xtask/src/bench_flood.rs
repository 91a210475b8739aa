//! `cargo xtask bench-flood [--json] [--seconds S] [--release] [--verbose]`: a mesh node on real
//! links while a peer floods it at full speed (crates/bench `bench_flood`).
//!
//! It builds `bench_flood` and `flood_attacker` (crates/bench), `mesh-node` (apps/test-mesh) and
//! `signaling-server` once (the dev profile by default, `--release` for optimised figures), then
//! runs `bench_flood`: a signaling server, a victim `mesh-node`, `--honest` honest `mesh-node`s
//! broadcasting at `--rate` per second each, and `flood_attacker`, which floods the victim over its
//! WebRTC link with unique signed broadcasts, duplicates, chunks that never complete, bad
//! signatures, lookups of random targets, unsolicited responses and IHAVEs of made-up ids, while
//! the victim's RSS and CPU time are sampled every second. It prints a table and, with `--json`,
//! one JSON object as its last line (keys `peak_rss_mb`, `final_rss_mb`, `flat`,
//! `honest_delivery_ratio`, `victim_cpu_share` and more; see crates/bench/src/bin/bench_flood.rs).
//! Targets: `flat` and `honest_delivery_ratio` = 1.0; the run reports them and never fails on them.
//! Not part of CI: it is a benchmark.

use crate::util::{cargo, run};

/// Flags of `cargo xtask bench-flood`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds of flooding (at least 9: the RSS samples are cut in thirds).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Honest nodes besides the victim (1 to 6).
    #[arg(long, default_value_t = 3)]
    honest: u64,
    /// Broadcasts per second of each honest node during the flood.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Kinds of frame the attacker sends (repeatable; default all): unique, duplicate, chunk,
    /// bad-signature, lookup, unsolicited, ihave.
    #[arg(long)]
    kinds: Vec<String>,
    /// The attacker's frames per second of each kind (0, the default: as fast as its link takes
    /// them, until the victim disconnects and bans it). Under the victim's per-link budget
    /// (`link_verify_rate`), the flood it can keep up.
    #[arg(long, default_value_t = 0.0)]
    attacker_rate: f64,
    /// Build and run optimised binaries.
    #[arg(long)]
    release: bool,
    /// Also print the results as one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Print every RSS/CPU sample, the attacker's counters and the victim's.
    #[arg(long)]
    verbose: bool,
}

/// Entry point of the `bench-flood` task.
pub fn run_task(args: Args) -> Result<(), String> {
    let mut build = cargo();
    build.args([
        "build",
        "--locked",
        "-p",
        "bench",
        "--bin",
        "bench_flood",
        "--bin",
        "flood_attacker",
        "-p",
        "test-mesh",
        "--bin",
        "mesh-node",
        "-p",
        "signaling-server",
        "--bin",
        "signaling-server",
    ]);
    if args.release {
        build.arg("--release");
    }
    run("build bench-flood", &mut build)?;
    let bin = crate::util::target_dir().join(if args.release { "release" } else { "debug" });
    let mut cmd = std::process::Command::new(bin.join("bench_flood"));
    cmd.arg("--node-bin")
        .arg(bin.join("mesh-node"))
        .arg("--server-bin")
        .arg(bin.join("signaling-server"))
        .arg("--attacker-bin")
        .arg(bin.join("flood_attacker"))
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--honest", &args.honest.to_string()])
        .args(["--rate", &args.rate.to_string()])
        .args(["--attacker-rate", &args.attacker_rate.to_string()]);
    for kind in &args.kinds {
        cmd.args(["--kinds", kind]);
    }
    if args.json {
        cmd.arg("--json");
    }
    if args.verbose {
        cmd.arg("--verbose");
    }
    run("bench-flood", &mut cmd)
}
