//! Replaying stored inputs on stable: the corpus and regression files, or files named on
//! the command line. Used by the replay test and by the targets' non-fuzzing `main`.

use std::path::{Path, PathBuf};

use crate::{Finding, Outcome};

/// The fuzz crate's directory: the current directory when it holds `corpus/` (cargo runs
/// tests there; an artifact shared between checkouts through one target directory must read
/// this checkout's corpus), else the directory this crate was compiled from.
pub fn fuzz_dir() -> PathBuf {
    if let Ok(cwd) = std::env::current_dir()
        && cwd.join("corpus").is_dir()
        && cwd.join("Cargo.toml").is_file()
    {
        return cwd;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file in `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` (the latter may
/// be absent), sorted.
pub fn stored_inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        files.extend(files_in(&fuzz_dir().join(dir).join(target)));
    }
    files
}

/// The files directly in `dir` (none if it does not exist), sorted; hidden files skipped.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Runs one file through `target` (with the `ops` transcript on, for a readable finding).
pub fn replay_file(target: &str, path: &Path) -> Result<Outcome, Finding> {
    let data =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    crate::run(target, &data, true)
}

/// The `main` of a target binary built without `--cfg fuzzing`: replays the files and
/// directories named in the arguments (default: the stored inputs of `target`), prints
/// one line per file, and exits non-zero on a finding.
pub fn main(target: &str) {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let files: Vec<PathBuf> = if args.is_empty() {
        stored_inputs(target)
    } else {
        args.iter()
            .flat_map(|a| {
                if a.is_dir() {
                    files_in(a)
                } else {
                    vec![a.clone()]
                }
            })
            .collect()
    };
    let mut findings = 0;
    for file in &files {
        match replay_file(target, file) {
            Ok(outcome) => println!("ok {}: {outcome:?}", file.display()),
            Err(finding) => {
                findings += 1;
                println!("FINDING {}: {finding}", file.display());
            }
        }
    }
    println!(
        "{target}: {} inputs replayed, {findings} findings",
        files.len()
    );
    if findings > 0 {
        std::process::exit(1);
    }
}
