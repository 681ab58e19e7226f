#!/usr/bin/env bash
# berth's main job, end to end: a private containerd, berthd (berth's CRI runtime daemon) in
# front of it, and a pod driven through the CRI socket with the `berth` CLI: a container that
# prints and exits, a long-running one, their status and their logs in the CRI log format.
# Everything is left running.
#
#   bash scripts/demo.sh          # as root on Debian 12; installs what is missing
#   bash scripts/demo.sh stop     # removes the demo pod, stops berthd and containerd
#
# Everything lives in $BERTH_DEMO_DIR (default /tmp/berth-demo): containerd's root, state and
# socket, berthd's socket (berth.sock), config, checkpoints, log FIFOs and logs, and the pod's
# container logs. containerd namespace: $BERTH_NAMESPACE (default berth-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

DEMO=${BERTH_DEMO_DIR:-/tmp/berth-demo}
export BERTH_NAMESPACE=${BERTH_NAMESPACE:-berth-demo}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth-target}"
BIN="$CARGO_TARGET_DIR/release"
SOCK="$DEMO/berth.sock"
PIDFILE="$DEMO/berthd.pid"

say() { printf '\n== %s\n' "$*"; }
die() { echo "demo.sh: $*" >&2; exit 1; }
berth() { "$BIN/berth" --socket "$SOCK" "$@"; }
berthd_running() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

[ "$(id -u)" -eq 0 ] || die "run as root: containerd and runc need it"

stop_berthd() {
    if berthd_running; then
        pid=$(cat "$PIDFILE")
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    fi
    rm -f "$PIDFILE"
}

if [ "${1:-}" = stop ]; then
    if berthd_running && [ -x "$BIN/berth" ]; then
        for pod in $(berth pods -q 2>/dev/null); do berth rmp "$pod" >/dev/null || true; done
    fi
    stop_berthd
    bash scripts/containerd-private.sh stop "$DEMO"
    echo "demo stopped; $DEMO kept (rm -rf $DEMO to remove it)"
    exit 0
fi
[ $# -eq 0 ] || die "usage: demo.sh [stop]"

say "system packages (containerd, runc, busybox-static, protoc; a C linker and curl for Rust)"
bash scripts/install-deps.sh
missing=""
command -v cc >/dev/null 2>&1 || missing="$missing gcc libc6-dev"
command -v curl >/dev/null 2>&1 || missing="$missing curl ca-certificates"
if [ -n "$missing" ]; then
    echo "installing:$missing"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2086 # a list of packages
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Rust 1.85 or newer (edition 2024); Debian 12's own cargo is too old, so rustup installs it.
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
rust_ok() {
    command -v cargo >/dev/null 2>&1 || return 1
    v=$(rustc --version | awk '{print $2}')
    [ "$(printf '%s\n1.85.0\n' "$v" | sort -V | head -n1)" = 1.85.0 ]
}
if ! rust_ok; then
    say "Rust toolchain (rustup, stable, minimal profile)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable
    . "$HOME/.cargo/env"
    rust_ok || die "rustc $(rustc --version) is older than 1.85"
fi

say "building berthd and berth (release)"
cargo build --release -p berth-daemon -p berth-cli --bins
test -x "$BIN/berthd" && test -x "$BIN/berth" || die "no binaries in $BIN"

say "a private containerd in $DEMO (busybox image built locally and imported)"
info=$(bash scripts/containerd-private.sh start "$DEMO")
echo "$info"
ns=$(echo "$info" | sed -n 's/^namespace=//p')
image=$(echo "$info" | sed -n 's/^image=//p')

say "berthd on $SOCK"
cat >"$DEMO/berthd.toml" <<EOF
socket = "$SOCK"
containerd_socket = "$DEMO/containerd.sock"
containerd_namespace = "$ns"
root_dir = "$DEMO/berth-root"
state_dir = "$DEMO/berth-state"
sandbox_image = "$image"
sandbox_command = ["sleep", "infinity"]
log_level = "info"
EOF
# A berthd of an earlier run is replaced by this build; its containers keep running and the
# new berthd recovers them.
stop_berthd
setsid "$BIN/berthd" --config "$DEMO/berthd.toml" >>"$DEMO/berthd.log" 2>&1 </dev/null &
echo $! >"$PIDFILE"
ready=""
for _ in $(seq 600); do
    # ListContainers answers once berthd reached containerd and finished recovery.
    if berth ps -a -q >/dev/null 2>&1; then
        ready=yes
        break
    fi
    berthd_running || { tail -n 20 "$DEMO/berthd.log" >&2; die "berthd exited; log: $DEMO/berthd.log"; }
    sleep 0.05
done
[ -n "$ready" ] || { tail -n 20 "$DEMO/berthd.log" >&2; die "berthd not ready after 30 s; log: $DEMO/berthd.log"; }
berth version

say "the demo pod (host network) and two containers"
for old in $(berth pods --name demo -q); do berth rmp "$old" >/dev/null; done
uid="demo-$(date +%s)"
pod=$(berth runp --name demo --namespace default --uid "$uid" --log-dir "$DEMO/logs/$uid")
echo "pod:    $pod"
hello=$(berth create "$pod" --name hello --image "$image" -- \
    sh -c 'echo "hello from a container started by berth"; echo "this line went to stderr" >&2; echo "hostname: $(hostname)"; exit 0')
ticker=$(berth create "$pod" --name ticker --image "$image" -- \
    sh -c 'i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 1; done')
berth start "$hello" "$ticker" >/dev/null
echo "hello:  $hello (prints and exits)"
echo "ticker: $ticker (runs until stopped)"
for _ in $(seq 600); do
    [ -n "$(berth ps --state exited --id "$hello" -q)" ] && break
    sleep 0.05
done
sleep 2

say "berth pods"
berth pods
say "berth ps -a"
berth ps -a
say "berth inspect hello (status)"
berth inspect "$hello" | grep -E '"(state|exit_code|reason|started_at|finished_at|log_path)"'
say "berth logs hello"
berth logs "$hello"
log=$(berth inspect "$hello" | sed -n 's/.*"log_path": "\(.*\)".*/\1/p' | head -n1)
say "the CRI log file itself: $log"
cat "$log"
say "berth logs --tail 3 ticker"
berth logs --tail 3 "$ticker"

cat <<EOF

The pod, the ticker, berthd (pid $(cat "$PIDFILE")) and containerd keep running.
  berth CLI:     $BIN/berth --socket $SOCK <version|pods|ps -a|inspect ID|logs -f ID|stop ID|rm ID|rmp POD>
  any CRI client, e.g. crictl --runtime-endpoint unix://$SOCK ps -a
  berthd log:    $DEMO/berthd.log      config: $DEMO/berthd.toml
Stop everything: bash scripts/demo.sh stop
EOF
