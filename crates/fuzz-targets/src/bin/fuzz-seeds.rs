//! Writes every target's seed inputs to `DIR/TARGET/` (`cargo xtask fuzz --seed-corpus` runs it
//! with `fuzz/corpus`), replacing the seeds written before (files named `seed-*`) and keeping the
//! inputs a fuzzer added.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz-seeds DIR");
        std::process::exit(2);
    };
    for (target, seeds) in fuzz_targets::seeds::all() {
        let target_dir = dir.join(target);
        std::fs::create_dir_all(&target_dir)?;
        for entry in std::fs::read_dir(&target_dir)? {
            let path = entry?.path();
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"))
            {
                std::fs::remove_file(path)?;
            }
        }
        for (name, bytes) in &seeds {
            std::fs::write(target_dir.join(format!("seed-{name}")), bytes)?;
        }
        println!(
            "{target}: {} seeds in {}",
            seeds.len(),
            target_dir.display()
        );
    }
    Ok(())
}
