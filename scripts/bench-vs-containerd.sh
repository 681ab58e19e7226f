#!/usr/bin/env bash
# berthd beside containerd's own CRI plugin, on the same containerd 1.6, in one run:
#
#   bash scripts/bench-vs-containerd.sh [--iterations N]
#
# Starts the critest harness's env (a private containerd 1.6.20 with its CRI plugin, images
# pre-imported) and berthd on that containerd (scripts/conformance.sh --serve), runs
# daemon/examples/cri-compare against both sockets (the endpoints take turns; host-network
# pods, so no CNI in the figures) and prints p50/p99 per RPC side by side with the ratio.
# Everything is stopped at the end, also on failure. Root, Debian 12; the harness must be
# there (BERTH_CRITEST_DIR, as for scripts/conformance.sh). Figures are printed, never judged.
set -euo pipefail
cd "$(dirname "$0")/.."
ITER=100
while [ $# -gt 0 ]; do
  case $1 in
    --iterations) ITER=${2:?--iterations needs a number}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-vs-containerd: unknown option $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth-target}"
W=${BERTH_CRITEST_WORK:-/tmp/berth-critest}
cargo build --release -p berth-daemon --examples
trap 'bash scripts/conformance.sh --stop >/dev/null 2>&1 || true' EXIT
bash scripts/conformance.sh --serve
# shellcheck disable=SC1091 # written by the env's start
. "$W/env/env.sh"
"$CARGO_TARGET_DIR/release/examples/cri-compare" \
  --endpoint "berthd=$W/berthd/berthd.sock" \
  --endpoint "containerd=$CRITEST_CONTAINERD_SOCKET" \
  --image registry.k8s.io/e2e-test-images/busybox:1.29-2 \
  --iterations "$ITER"
