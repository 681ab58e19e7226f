#!/usr/bin/env bash
# berth's whole test suite. Installs what it needs on a fresh Debian 12 (as root), then runs
# formatting and lint gates, every unit, snapshot, property and integration test (the
# integration tests start private containerd instances), the planted-bug check and the
# fuzz corpus replay.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth-target}"
export CARGO_TERM_COLOR=never
log=$(mktemp /tmp/berth-test-XXXXXX.log)
exec > >(tee "$log") 2>&1
summary() {
  # One closing line over every test binary run above.
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1) } }
       END { printf "%d passed, %d failed\n", p, f }' "$log"
}
trap 'status=$?; echo "== summary"; summary; exit $status' EXIT

echo "== format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p berth-core --all-targets --features testing,planted-bugs -- -D warnings

echo "== tests (unit, snapshot, property, integration against a private containerd)"
cargo test --workspace

echo "== the property test must catch a planted bug"
cargo test -p berth-core --features planted-bugs --test model planted_bug_is_caught -- --nocapture

if [ -f fuzz/Cargo.toml ] && [ -d fuzz/tests ]; then
  echo "== fuzz crate: lint and corpus replay (stable)"
  cargo fmt --manifest-path fuzz/Cargo.toml -- --check
  cargo clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
  cargo test --manifest-path fuzz/Cargo.toml
fi

# The deterministic simulator (docs/architecture.md §6): berth's real service on madsim against the simulated
# containerd and disk. Built with --cfg madsim in a target dir of its own (uplifted binaries
# of the two flavours would collide).
sim() { env RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="${SIM_TARGET_DIR:-$HOME/.cache/berth-target-sim}" "$@"; }

echo "== simulator (madsim): lint, guard, seeds 0..20, determinism, regressions"
sim cargo clippy --release -p berth-sim -p berth-simbackend --all-targets -- -D warnings
sim cargo clippy --release -p berth-sim --all-targets --features planted-bugs -- -D warnings
# SIM_REQUIRED=1: the guard test fails if --cfg madsim did not reach the build (every
# simulation test would otherwise compile to nothing and "pass").
sim env SIM_REQUIRED=1 cargo test --release -p berth-sim -p berth-simbackend

echo "== simulator: 20,000 seeds of the full workload (3 clients, 50 containers, 5 berth crashes per seed)"
# Fails if any seed fails or fewer than 20,000 ran. (`--allow-open` would list seeds that
# hit a known open berth bug, berth_sim::bugs::OPEN_BUGS, apart; none is open now.)
sim cargo run --release -p berth-sim --bin soak -- --seeds 20000 --secs 900 --jobs 2 --min-seeds 20000

echo "== simulator: 20,000 seeds in swarm shapes (1-6 clients, 1-50 containers, 0-12 crashes, drawn per seed)"
# Small crash-dense runs and crowded ones reach what the default shape rarely does (seeds
# 164976, 1366646 and 2073281 were found so).
sim cargo run --release -p berth-sim --bin soak -- --swarm --start 1000000 --seeds 20000 --secs 900 --jobs 2 --min-seeds 20000

echo "== simulator: every planted bug must be caught (table: bug, caught, seeds needed, shrunk trace)"
sim cargo run --release -p berth-sim --features planted-bugs --bin planted

# critest, the CRI validation suite, against berthd on the offline harness's containerd; fails if
# a spec in conformance/expected-pass.txt did not pass (conformance/README.md).
echo "== conformance (critest v1.32.0 against berthd)"
bash scripts/conformance.sh
