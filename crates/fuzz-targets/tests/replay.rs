//! Replays every committed fuzz input on the stable toolchain: each target of
//! [`fuzz_targets::TARGETS`] runs over every file in `fuzz/corpus/TARGET/` and
//! `fuzz/regressions/TARGET/`. A panic fails the test and names the file; so does a target whose
//! corpus directory is missing or empty, so that the replay cannot pass by finding nothing.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted; `None` when `dir` does not exist.
fn files(dir: &Path) -> Option<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Some(files)
}

/// Runs `target` over `inputs`; the files that panicked, with the panic message.
fn replay(target: fuzz_targets::Target, inputs: &[PathBuf]) -> Vec<String> {
    let mut failures = Vec::new();
    for path in inputs {
        let data = std::fs::read(path).expect("a readable input");
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(&data))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{}: {message}", path.display()));
        }
    }
    failures
}

#[test]
fn every_corpus_and_regression_input_replays_without_a_panic() {
    let root = fuzz_dir();
    let mut problems = Vec::new();
    let mut replayed = 0;
    for (name, target) in fuzz_targets::TARGETS {
        let corpus = root.join("corpus").join(name);
        match files(&corpus) {
            None => problems.push(format!("{}: missing", corpus.display())),
            Some(f) if f.is_empty() => problems.push(format!("{}: empty", corpus.display())),
            Some(f) => {
                replayed += f.len();
                problems.extend(replay(*target, &f));
            }
        }
        // Regression inputs are optional per target (only targets that crashed have them).
        if let Some(f) = files(&root.join("regressions").join(name)) {
            replayed += f.len();
            problems.extend(replay(*target, &f));
        }
    }
    assert!(
        problems.is_empty(),
        "fuzz replay failed:\n{}",
        problems.join("\n")
    );
    println!("replayed {replayed} fuzz inputs");
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    // The cargo-fuzz crate declares one binary per target; a target added here and not there (or
    // renamed) would never be fuzzed.
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in fuzz_targets::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "fuzz/fuzz_targets/{name}.rs is missing"
        );
    }
}

#[test]
fn generated_seeds_run_without_a_panic() {
    // The seeds as the current encoders make them (the committed corpus may predate a wire change).
    let seeds = fuzz_targets::seeds::all();
    for (name, target) in fuzz_targets::TARGETS {
        let (_, inputs) = seeds
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no seeds for {name}"));
        assert!(!inputs.is_empty(), "no seeds for {name}");
        for (file, bytes) in inputs {
            if catch_unwind(AssertUnwindSafe(|| target(bytes))).is_err() {
                panic!("{name}: seed {file} panicked");
            }
        }
    }
}
