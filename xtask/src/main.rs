//! `cargo xtask`: the project's automation, one module per task.
//!
//! `cargo xtask ci` runs every check that CI runs, in order; `.ci/run` calls nothing else of substance.

mod bench_flood;
mod bench_link;
mod bench_signaling;
mod bench_web;
mod broadcast_study;
mod ci;
mod fuzz;
mod sim;
mod sim_scale;
mod test_mesh;
mod util;
mod web;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "xtask", about = "p2pmesh's automation: cargo xtask <task>")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand, Debug)]
enum Task {
    /// Every check CI runs: fmt, clippy, tests, docs, the purity of the sans-IO cores.
    Ci(ci::Args),
    /// Run a deterministic many-node simulator scenario (release build) and print its report; the
    /// flags are the simulator's (`cargo xtask sim --help` prints them).
    #[command(disable_help_flag = true)]
    Sim(sim::Args),
    /// The broadcast study (issue 17): the simulator's broadcast scenario once per variant
    /// (flooding, earlier settings, other radii, trees and link counts) on one mesh and seed, as a
    /// table with the latency as a multiple of flooding's.
    BroadcastStudy(broadcast_study::Args),
    /// How the simulator's cost grows with the network (issue 17): the broadcast scenario at each
    /// size, one run at a time, as a table (events, wall and CPU time, peak memory) and a log-log
    /// plot (docs/sim-scale.svg); `--from` adds earlier runs' JSON reports.
    SimScale(sim_scale::Args),
    /// Load the signaling server (release build) with N clients and print its throughput,
    /// latency and memory.
    BenchSignaling(bench_signaling::Args),
    /// Measure WebRTC links (release build): open time, Mesh::send vs raw throughput, RSS per
    /// link, broadcast latency across 20 nodes.
    BenchLink(bench_link::Args),
    /// Flood a mesh node over real links (a victim mesh-node, honest nodes, an attacker at full
    /// speed) and print its RSS over time, its CPU share and the honest broadcasts it delivered.
    BenchFlood(bench_flood::Args),
    /// Build the browser chat (p2pmesh-js for wasm32, wasm-bindgen, the page's files) into
    /// apps/chat-web/dist, which the signaling server serves at GET /; prints the sizes.
    Web(web::Args),
    /// Measure p2pmesh in headless Chromium (release build): page load to the first link,
    /// browser-native link open, broadcast latency across browser tabs and native nodes.
    BenchWeb(bench_web::Args),
    /// Run the mesh as real processes (a signaling server, N mesh-node processes, real WebRTC)
    /// through real faults: join-broadcast, direct, churn, hot-churn, server-restart, partition,
    /// large-message, forged, mesh-signaling.
    TestMesh(test_mesh::Args),
    /// Run the cargo-fuzz targets (nightly and cargo-fuzz, installed when missing) in turn for
    /// --seconds each (or --runs) and print executions per target; fails on a crash.
    /// `--seed-corpus` rewrites the committed seeds from the current encoders.
    Fuzz(fuzz::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Ci(args) => ci::run_task(args),
        Task::Sim(args) => sim::run_task(args),
        Task::SimScale(args) => sim_scale::run_task(args),
        Task::BroadcastStudy(args) => broadcast_study::run_task(args),
        Task::BenchSignaling(args) => bench_signaling::run_task(args),
        Task::BenchLink(args) => bench_link::run_task(args),
        Task::BenchFlood(args) => bench_flood::run_task(args),
        Task::Web(args) => web::run_task(args),
        Task::BenchWeb(args) => bench_web::run_task(args),
        Task::TestMesh(args) => test_mesh::run_task(args),
        Task::Fuzz(args) => fuzz::run_task(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
