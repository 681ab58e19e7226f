#!/usr/bin/env bash
# berth's main job as far as it is built today: a private containerd (own socket, root and
# namespace, busybox image imported) driven through berth's containerd backend with real
# runc tasks. berthd (the CRI server) is not built yet; when it lands this script starts it
# against the same containerd and runs a pod and a container through the CRI socket.
#
#   bash scripts/demo.sh            # as root on Debian 12; leaves containerd running
#   bash scripts/containerd-private.sh stop /tmp/berth-demo   # to stop it
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth-target}"

echo "== a private containerd in /tmp/berth-demo"
bash scripts/containerd-private.sh start /tmp/berth-demo

echo "== the lifecycle core: start, exit and recovery transcripts (deterministic world)"
cargo test -q -p berth-core --test transcripts -- --nocapture 2>&1 | tail -n 3

echo "== berth's containerd backend against a private containerd: 20 real containers"
cargo run -q --release -p berth-containerd --example containerd-bench -- 20 20

echo
echo "containerd is still running: bash scripts/containerd-private.sh stop /tmp/berth-demo"
