//! Running commands from the workspace root.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the workspace root when relative),
/// else `target/` in the workspace root.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    }
}

/// A `cargo` command run from the workspace root, with the cargo that runs xtask.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root());
    cmd
}

/// `cargo run --locked --quiet --release -p PACKAGE --bin BIN --`: the caller appends the
/// binary's arguments.
pub fn cargo_run_release(package: &str, bin: &str) -> Command {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--locked",
        "--quiet",
        "--release",
        "-p",
        package,
        "--bin",
        bin,
        "--",
    ]);
    cmd
}

/// Run a command to completion; an error names the step that failed.
pub fn run(step: &str, cmd: &mut Command) -> Result<(), String> {
    eprintln!("\n== {step}: {}", describe(cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("{step}: could not start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

/// Run a command and capture its standard output.
pub fn output(step: &str, cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{step}: could not start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{step} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Build the simulator (release) and return the path of its binary.
pub fn build_sim() -> Result<PathBuf, String> {
    let mut build = cargo();
    build.args([
        "build",
        "--locked",
        "--release",
        "-p",
        "sim",
        "--bin",
        "sim",
    ]);
    run("build the simulator", &mut build)?;
    Ok(target_dir().join("release").join("sim"))
}

/// The last JSON line the simulator printed (`--json`): its report.
pub fn last_json(out: &str) -> Result<serde_json::Value, String> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or("the simulator printed no JSON report")?;
    serde_json::from_str(line).map_err(|e| format!("the simulator's JSON report: {e}"))
}
