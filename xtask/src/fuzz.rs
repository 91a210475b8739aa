//! `cargo xtask fuzz`: the fuzzing campaigns. Each target of fuzz/ (a cargo-fuzz crate whose bodies
//! are crates/fuzz-targets) runs in turn under libFuzzer for `--seconds` or `--runs`, starting from
//! its committed corpus and regression inputs; the task prints executions, executions per second
//! and new inputs per target, and fails when a target crashed (the crashing input is kept under
//! fuzz/artifacts/TARGET/, to be fixed and then copied to fuzz/regressions/TARGET/).
//!
//! What it needs and installs when missing: a nightly toolchain (rustup) and cargo-fuzz
//! ([`CARGO_FUZZ_VERSION`], `cargo install --locked`). Inputs the fuzzer finds go to
//! fuzz/artifacts/corpus/TARGET/ (not committed); the committed corpus is only read.
//!
//! `--seed-corpus` instead rewrites the committed seeds (fuzz/corpus/TARGET/seed-*) from the current
//! encoders (crates/fuzz-targets/src/seeds.rs), after a wire format changed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::{cargo, root, run};

/// The cargo-fuzz release installed when missing (or another version is found).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The toolchain cargo-fuzz builds with (libFuzzer's coverage flags are nightly-only).
const TOOLCHAIN: &str = "nightly";

/// Flags of `cargo xtask fuzz`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds each target runs (libFuzzer's -max_total_time).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Stop each target after this many executions instead (libFuzzer's -runs); with
    /// --seconds, whichever comes first.
    #[arg(long)]
    runs: Option<u64>,
    /// Only this target (repeatable); every target by default.
    #[arg(long)]
    target: Vec<String>,
    /// Build with AddressSanitizer (slower; the workspace forbids `unsafe`, so the default is
    /// no sanitizer: a panic, an overflow with debug assertions, a timeout or an allocation over
    /// the RSS limit is a crash either way).
    #[arg(long)]
    asan: bool,
    /// Write the seed corpus (fuzz/corpus/TARGET/seed-*) from the current encoders and stop.
    #[arg(long)]
    seed_corpus: bool,
}

/// One target's figures, from libFuzzer's final stats.
#[derive(Debug, Default)]
struct Report {
    target: String,
    executions: u64,
    per_second: u64,
    new_units: u64,
    peak_rss_mb: u64,
    crash: Option<String>,
}

/// Entry point of the `fuzz` task.
pub fn run_task(args: Args) -> Result<(), String> {
    let fuzz_dir = root().join("fuzz");
    if args.seed_corpus {
        return run(
            "fuzz: seed corpus",
            cargo()
                .args([
                    "run",
                    "--locked",
                    "--quiet",
                    "-p",
                    "fuzz-targets",
                    "--bin",
                    "fuzz-seeds",
                    "--",
                ])
                .arg(fuzz_dir.join("corpus")),
        );
    }
    let all = targets(&fuzz_dir)?;
    let chosen: Vec<String> = if args.target.is_empty() {
        all
    } else {
        for t in &args.target {
            if !all.contains(t) {
                return Err(format!("fuzz: no target {t}; the targets are {all:?}"));
            }
        }
        args.target.clone()
    };
    install()?;
    let mut reports = Vec::new();
    for target in &chosen {
        reports.push(campaign(&fuzz_dir, target, &args)?);
    }
    print_table(&reports);
    let crashed: Vec<&Report> = reports.iter().filter(|r| r.crash.is_some()).collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzz: {} target(s) crashed: {}",
            crashed.len(),
            crashed
                .iter()
                .map(|r| format!("{} ({})", r.target, r.crash.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// The `[[bin]]` names of fuzz/Cargo.toml, in order.
fn targets(fuzz_dir: &Path) -> Result<Vec<String>, String> {
    let manifest = std::fs::read_to_string(fuzz_dir.join("Cargo.toml"))
        .map_err(|e| format!("fuzz: reading fuzz/Cargo.toml: {e}"))?;
    let mut in_bin = false;
    let mut names = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(value) = line.strip_prefix("name = ") {
            names.push(value.trim_matches('"').to_owned());
        }
    }
    if names.is_empty() {
        return Err("fuzz: fuzz/Cargo.toml declares no target".into());
    }
    Ok(names)
}

/// Installs the nightly toolchain and cargo-fuzz when missing.
fn install() -> Result<(), String> {
    let toolchains = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .map_err(|e| format!("fuzz: rustup is needed to install {TOOLCHAIN}: {e}"))?;
    let listed = String::from_utf8_lossy(&toolchains.stdout);
    if !listed.lines().any(|l| l.starts_with(TOOLCHAIN)) {
        run(
            "fuzz: install the nightly toolchain",
            Command::new("rustup").args([
                "toolchain",
                "install",
                TOOLCHAIN,
                "--profile",
                "minimal",
            ]),
        )?;
    }
    let version = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !version.contains(CARGO_FUZZ_VERSION) {
        run(
            "fuzz: install cargo-fuzz",
            Command::new("cargo").args([
                "install",
                "cargo-fuzz",
                "--locked",
                "--version",
                CARGO_FUZZ_VERSION,
            ]),
        )?;
    }
    Ok(())
}

/// Runs one target; its report (a crash is a report, not an error).
fn campaign(fuzz_dir: &Path, target: &str, args: &Args) -> Result<Report, String> {
    let committed = fuzz_dir.join("corpus").join(target);
    let regressions = fuzz_dir.join("regressions").join(target);
    let scratch = fuzz_dir.join("artifacts").join("corpus").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    for dir in [&scratch, &artifacts] {
        std::fs::create_dir_all(dir).map_err(|e| format!("fuzz: {}: {e}", dir.display()))?;
    }
    let log_path = fuzz_dir.join("artifacts").join(format!("{target}.log"));
    let log = File::create(&log_path).map_err(|e| format!("fuzz: {}: {e}", log_path.display()))?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root()).arg(format!("+{TOOLCHAIN}")).args([
        "fuzz",
        "run",
        "--debug-assertions",
    ]);
    if !args.asan {
        cmd.args(["--sanitizer", "none"]);
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        // Beside the stable builds, not over them.
        cmd.arg("--target-dir").arg(PathBuf::from(dir).join("fuzz"));
    }
    // The first corpus directory receives what the fuzzer finds; the committed ones are read.
    cmd.arg(target).arg(&scratch).arg(&committed);
    if regressions.is_dir() {
        cmd.arg(&regressions);
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={}", args.seconds))
        .arg("-print_final_stats=1")
        .arg("-timeout=20")
        .arg("-rss_limit_mb=2048")
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    if let Some(runs) = args.runs {
        cmd.arg(format!("-runs={runs}"));
    }
    eprintln!(
        "\n== fuzz: {target} for {}{} (log: {})",
        if args.runs.is_some() { "at most " } else { "" },
        match args.runs {
            Some(r) => format!("{r} runs or {} s", args.seconds),
            None => format!("{} s", args.seconds),
        },
        log_path.display()
    );
    let status = cmd
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .map_err(|e| format!("fuzz: could not start cargo fuzz: {e}"))?;
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut report = parse(target, &text);
    if !status.success() {
        let artifact = text.lines().rev().find_map(|l| {
            l.split_once("Test unit written to ")
                .map(|(_, p)| p.trim().to_owned())
        });
        if report.executions == 0 && artifact.is_none() {
            // Not a crash: the build or the run itself failed.
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "fuzz: {target}: cargo fuzz failed ({status}):\n{}",
                tail.join("\n")
            ));
        }
        report.crash = Some(artifact.unwrap_or_else(|| format!("{status}, see the log")));
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        eprintln!("{}", tail.join("\n"));
    }
    Ok(report)
}

/// libFuzzer's `stat::NAME: VALUE` lines (printed by -print_final_stats=1, after a crash too).
fn parse(target: &str, log: &str) -> Report {
    let mut report = Report {
        target: target.to_owned(),
        ..Report::default()
    };
    for line in log.lines() {
        let Some((key, value)) = line.strip_prefix("stat::").and_then(|l| l.split_once(':')) else {
            continue;
        };
        let value = value.trim().parse().unwrap_or(0);
        match key {
            "number_of_executed_units" => report.executions = value,
            "average_exec_per_sec" => report.per_second = value,
            "new_units_added" => report.new_units = value,
            "peak_rss_mb" => report.peak_rss_mb = value,
            _ => {}
        }
    }
    report
}

fn print_table(reports: &[Report]) {
    println!(
        "\n{:<28} {:>12} {:>9} {:>9} {:>8}  result",
        "target", "executions", "exec/s", "new", "rss MB"
    );
    for r in reports {
        println!(
            "{:<28} {:>12} {:>9} {:>9} {:>8}  {}",
            r.target,
            r.executions,
            r.per_second,
            r.new_units,
            r.peak_rss_mb,
            r.crash
                .as_deref()
                .map_or("ok".to_owned(), |c| format!("CRASH: {c}"))
        );
    }
    let total: u64 = reports.iter().map(|r| r.executions).sum();
    println!("total executions: {total}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_stats_are_read() {
        let log = "#1024\tpulse  cov: 10\nstat::number_of_executed_units: 123456\n\
                   stat::average_exec_per_sec:     2057\nstat::new_units_added:          31\n\
                   stat::slowest_unit_time_sec:    0\nstat::peak_rss_mb:              87\n";
        let r = parse("t", log);
        assert_eq!(
            (r.executions, r.per_second, r.new_units, r.peak_rss_mb),
            (123_456, 2057, 31, 87)
        );
        assert!(r.crash.is_none());
    }

    #[test]
    fn the_targets_are_the_fuzz_crates_binaries() {
        let names = targets(&root().join("fuzz")).expect("fuzz/Cargo.toml");
        assert!(names.contains(&"mesh_node".to_owned()), "{names:?}");
        assert!(!names.contains(&"p2pmesh-fuzz".to_owned()), "{names:?}");
    }
}
