#!/bin/sh
# A private containerd for humans and demos, with the same config as berth-testkit's
# PrivateContainerd (see testkit/src/containerd.rs, config_toml).
#
#   scripts/containerd-private.sh start DIR    # start (or find running), import the busybox image
#   scripts/containerd-private.sh stop DIR     # kill its tasks, stop containerd; DIR is kept
#   scripts/containerd-private.sh config DIR   # print the config it uses
#
# Everything lives under DIR (root, state, sockets, log) except what containerd always keeps
# under /run/containerd (shim sockets, runc state): use a namespace no other containerd on this
# host uses. Namespace: $BERTH_NAMESPACE, default "berth"; remembered in DIR/namespace.
# Needs root. Prints `socket=...` and `namespace=...` lines on start.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "containerd-private.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: containerd-private.sh start|stop|config DIR"
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd -P)
sock="$dir/containerd.sock"
pidfile="$dir/containerd.pid"
# Unix sockets are limited to 108 bytes including the ttrpc suffix.
[ ${#sock} -lt 100 ] || die "$sock is too long for a unix socket; use a shorter DIR"

config() {
    cat <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$dir/containerd.sock"

[ttrpc]
  address = "$dir/containerd.sock.ttrpc"

[debug]
  address = "$dir/debug.sock"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
EOF
}

running() { [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "$cmd" in
config)
    config
    ;;
start)
    [ "$(id -u)" -eq 0 ] || die "must run as root"
    "$here/install-deps.sh"
    if [ -s "$dir/namespace" ]; then
        ns=$(cat "$dir/namespace")
    else
        ns=${BERTH_NAMESPACE:-berth}
        echo "$ns" >"$dir/namespace"
    fi
    if ! running; then
        config >"$dir/config.toml"
        setsid containerd --config "$dir/config.toml" >>"$dir/containerd.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
        waited=0
        until ctr -a "$sock" version >/dev/null 2>&1; do
            if ! running; then
                tail -n 20 "$dir/containerd.log" >&2
                die "containerd exited; log: $dir/containerd.log"
            fi
            waited=$((waited + 1))
            if [ $waited -gt 400 ]; then
                tail -n 20 "$dir/containerd.log" >&2
                die "containerd did not answer on $sock within 20 s; log: $dir/containerd.log"
            fi
            sleep 0.05
        done
    fi
    ref=$("$here/build-image.sh" import "$sock" "$ns")
    echo "socket=$sock"
    echo "namespace=$ns"
    echo "image=$ref"
    echo "pid=$(cat "$pidfile")"
    echo "log=$dir/containerd.log"
    ;;
stop)
    [ "$(id -u)" -eq 0 ] || die "must run as root"
    ns=$(cat "$dir/namespace" 2>/dev/null || echo "${BERTH_NAMESPACE:-berth}")
    if running; then
        # Tasks first: stopping containerd leaves shims and containers running.
        for id in $(ctr -a "$sock" -n "$ns" tasks ls -q 2>/dev/null); do
            ctr -a "$sock" -n "$ns" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
            ctr -a "$sock" -n "$ns" tasks delete -f "$id" >/dev/null 2>&1 || true
        done
        pid=$(cat "$pidfile")
        kill -TERM "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 60 ]; do sleep 0.05; i=$((i + 1)); done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    # Shims of this containerd that are still around (their tasks were in another namespace,
    # or containerd was already dead): kill them and their containers.
    for p in $(grep -l -- "$sock" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
        if { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | grep -q '^[^ ]*containerd-shim'; then
            for c in $(grep -l "^PPid:[[:space:]]*$p\$" /proc/[0-9]*/status 2>/dev/null | cut -d/ -f3); do
                kill -KILL "$c" 2>/dev/null || true
            done
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    # Rootfs mounts the shims left behind.
    grep -o " $dir/[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    rmdir "/run/containerd/runc/$ns" 2>/dev/null || true
    echo "stopped containerd of $dir (namespace $ns); $dir kept"
    ;;
*)
    die "usage: containerd-private.sh start|stop|config DIR"
    ;;
esac
