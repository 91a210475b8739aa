//! `cargo xtask bench-link [--json]`: WebRTC link open time, throughput through `Mesh::send`
//! against a raw `webrtc` pair, memory per link and broadcast latency across 20 nodes.
//!
//! The measuring is done by the release-built `bench_link` binary of `crates/bench`
//! (`cargo run --release -p bench --bin bench_link`), so xtask, built in debug, needs no
//! dependency on the WebRTC stack. Everything runs in that one process over 127.0.0.1: a
//! signaling server on an ephemeral port, adapter link pairs, and the `Mesh` nodes. It prints
//! a table and, with `--json`, one JSON object as its last line (keys `open_ms_p50`,
//! `open_ms_p99`, `mesh_mb_s`, `raw_mb_s`, `ratio`, `rss_kib_per_link`, `broadcast_ms_p50`,
//! `broadcast_ms_p99`, and a few more). Targets: open median <= 250 ms, ratio >= 0.9,
//! <= 400 kB per link, broadcast p99 <= 50 ms; the run reports them and never fails on them.

use crate::util::{cargo_run_release, run};

/// Flags of `cargo xtask bench-link`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Adapter links opened one after the other for the open-time figures.
    #[arg(long, default_value_t = 60)]
    links: usize,
    /// Adapter link pairs held open for the memory figure (both ends in one process: twice as
    /// many link ends).
    #[arg(long, default_value_t = 50)]
    rss_pairs: usize,
    /// Megabytes (10^6 bytes) sent per throughput run.
    #[arg(long, default_value_t = 32)]
    mb: usize,
    /// Throughput runs of each of raw, adapter and mesh (interleaved; medians reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Mesh nodes of the broadcast-latency phase.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Broadcasts measured in the broadcast-latency phase.
    #[arg(long, default_value_t = 50)]
    broadcasts: usize,
    /// Also print the results as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// Entry point of the `bench-link` task.
pub fn run_task(args: Args) -> Result<(), String> {
    let mut cmd = cargo_run_release("bench", "bench_link");
    cmd.args(["--links", &args.links.to_string()]);
    cmd.args(["--rss-pairs", &args.rss_pairs.to_string()]);
    cmd.args(["--mb", &args.mb.to_string()]);
    cmd.args(["--runs", &args.runs.to_string()]);
    cmd.args(["--nodes", &args.nodes.to_string()]);
    cmd.args(["--broadcasts", &args.broadcasts.to_string()]);
    if args.json {
        cmd.arg("--json");
    }
    run("bench-link", &mut cmd)
}
