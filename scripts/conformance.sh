#!/usr/bin/env bash
# berth's CRI conformance gate: critest v1.32.0 against berthd, offline.
#
#   bash scripts/conformance.sh [--focus REGEX]... [--seed N] [--keep] [--out DIR]
#   bash scripts/conformance.sh --stop          # stop what a --keep run left running
#   bash scripts/conformance.sh --serve         # start the env and berthd, run no critest
#
# Prepares the critest harness (setup.sh into $BERTH_CRITEST_WORK, default /tmp/berth-critest),
# builds berthd in release mode, starts the harness's env (a private containerd 1.6 with its CRI
# plugin, a local registry, CNI), runs berthd against that containerd (berthd serves the
# RuntimeService; the env's containerd serves the images, namespace k8s.io), runs critest
# through the harness's run.sh with criproxy in front of berthd (per-method call counts), prints
# the per-group summary and judges report.json against conformance/expected-pass.txt:
#
#   * it fails if any spec listed there did not pass (each one is named with its error line);
#   * it lists the specs that passed but are not listed ("newly passing: add them"), except
#     those marked `# flaky: NAME` there;
#   * it fails if the run itself broke (no report.json, critest exit status other than 0 or 1:
#     critest exits 1 whenever any spec fails, which offline is always).
#
# Everything is cleaned up on exit, also on failure: berthd stopped (SIGTERM, then SIGKILL),
# the env stopped (`run.sh W stop-env`: processes, mounts, bridge, iptables chains), berthd's
# root and state dirs removed. `--keep` leaves the env and berthd running for debugging.
#
# Options:
#   --focus REGEX   only specs matching REGEX (critest's --ginkgo.focus; repeatable). Expected
#                   specs the focus leaves out are not judged.
#   --skip REGEX    leave out specs matching REGEX (--ginkgo.skip; repeatable).
#   --seed N        ginkgo's random spec order (the seed used is in OUT/run-info.txt).
#   --keep          leave the env and berthd running (crictl commands are printed).
#   --out DIR       results (report.json, summary.txt, critest.log, berthd.log, proxy-summary.txt);
#                   default $BERTH_CRITEST_WORK/results/conformance.
#   --stop          stop berthd and the env a --keep run left, then exit.
#   --serve         start the env and berthd and leave them running without a critest run
#                   (scripts/bench-vs-containerd.sh measures berthd beside containerd's CRI
#                   so); stop them with --stop.
#
# Environment:
#   BERTH_CRITEST_DIR       the harness folder (read only); default <repo>/../shared/critest
#   BERTH_CRITEST_WORK      the harness's work dir, at most 72 characters; default /tmp/berth-critest
#   BERTH_CRITEST_TIMEOUT   critest's deadline in seconds; default 1200 (a full run takes 2-3 min)
#   CARGO_TARGET_DIR        default $HOME/.cache/berth-target (as scripts/test.sh)
#
# Runs as root on Debian 12. The env uses 127.0.0.1:15987, host ports 12000-12003, the bridge
# critest0 and 10.233.78.0/24: one conformance run per host at a time (a lock enforces it).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

say() { printf 'conformance: %s\n' "$*"; }
die() { printf 'conformance: ERROR: %s\n' "$*" >&2; exit 1; }

FOCUS=() SKIP=() SEED="" KEEP=0 OUT="" STOP_ONLY=0 SERVE=0
while [ $# -gt 0 ]; do
  case $1 in
    --focus) FOCUS+=("${2:?--focus needs a REGEX}"); shift 2 ;;
    --skip) SKIP+=("${2:?--skip needs a REGEX}"); shift 2 ;;
    --seed) SEED=${2:?--seed needs a number}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --out) OUT=${2:?--out needs a DIR}; shift 2 ;;
    --stop) STOP_ONLY=1; shift ;;
    --serve) SERVE=1; KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

[ "$(id -u)" = 0 ] || die "must run as root (the harness runs containerd, runc, CNI and iptables)"
C=${BERTH_CRITEST_DIR:-$REPO/../shared/critest}
if [ ! -x "$C/setup.sh" ] || [ ! -x "$C/run.sh" ] || [ ! -f "$C/summarize.py" ]; then
  die "critest harness not found at $C (setup.sh, run.sh, summarize.py, bin/critest); on CI a copy of shared/ lies beside the clone; elsewhere set BERTH_CRITEST_DIR to the harness folder"
fi
C=$(cd "$C" && pwd)
W=${BERTH_CRITEST_WORK:-/tmp/berth-critest}
[ "${#W}" -le 72 ] || die "BERTH_CRITEST_WORK=$W is longer than 72 characters (containerd's sockets live under it)"
case $W in /*) ;; *) die "BERTH_CRITEST_WORK=$W must be an absolute path" ;; esac
EXPECTED=$REPO/conformance/expected-pass.txt
[ -f "$EXPECTED" ] || die "$EXPECTED is missing"
OUT=${OUT:-$W/results/conformance}
# CI's budget is 35 minutes and the rest of scripts/test.sh takes about 12
TIMEOUT=${BERTH_CRITEST_TIMEOUT:-1200}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth-target}"
BERTHD=$CARGO_TARGET_DIR/release/berthd
B=$W/berthd
BSOCK=$B/berthd.sock
mkdir -p "$W"

# One run per host: the env's ports, bridge and subnet are fixed.
exec 9>/tmp/berth-conformance.lock
flock -n 9 || die "another conformance run holds /tmp/berth-conformance.lock (the env's ports and bridge are per host)"

BERTHD_PID="" # set once this run has started berthd
berthd_pid() {
  local p
  if [ -n "$BERTHD_PID" ]; then
    # our own child: its command line may still be this script's until setsid has exec'd berthd
    kill -0 "$BERTHD_PID" 2>/dev/null && echo "$BERTHD_PID"
    return 0
  fi
  # a pid file left by an earlier run: only while it is still that berthd (pid reuse)
  p=$(cat "$B/berthd.pid" 2>/dev/null || true)
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null && tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$B/berthd.toml" && echo "$p"
  return 0
}

stop_berthd() {
  local p i
  p=$(berthd_pid)
  if [ -n "$p" ]; then
    kill -TERM "$p" 2>/dev/null || true
    # berthd's graceful stop waits up to shutdown_timeout (5 s) for in-flight requests
    for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      say "berthd (pid $p) did not exit 10 s after SIGTERM; SIGKILL"
      kill -KILL "$p" 2>/dev/null || true
      for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  rm -f "$B/berthd.pid"
  BERTHD_PID=""
}

teardown() { # berthd first: it must never outlive the containerd it talks to
  stop_berthd
  "$C/run.sh" "$W" stop-env 9>&- || true
  # berthd's checkpoints describe containers stop-env has just removed
  rm -rf "$B/root" "$B/state" "$BSOCK" "$BSOCK.lock"
}

if [ "$STOP_ONLY" = 1 ]; then
  teardown
  say "stopped berthd and the env in $W"
  exit 0
fi

PHASE="preparing"
on_exit() {
  local rc=$? logs="" f
  trap - EXIT
  if [ "$KEEP" = 1 ] && [ "$PHASE" != preparing ]; then
    say "--keep: the env and berthd stay running; stop them with: ${BERTH_CRITEST_WORK:+BERTH_CRITEST_WORK=$W }bash scripts/conformance.sh --stop"
    [ -f "$W/env/env.sh" ] && say "crictl: . $W/env/env.sh; \$CRITEST_CRICTL --config $W/env/critest-config.yaml --runtime-endpoint unix://$BSOCK --image-endpoint unix://\$CRITEST_CONTAINERD_SOCKET pods"
  else
    stop_berthd
    teardown
  fi
  # berthd's log next to critest's, once berthd has written its last line
  [ -f "$B/berthd.log" ] && [ -d "$OUT" ] && cp "$B/berthd.log" "$OUT/berthd.log" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    for f in "$OUT/berthd.log" "$OUT/critest.log" "$OUT/summary.txt" "$OUT/containerd.log"; do
      [ -f "$f" ] && logs="$logs $f"
    done
    [ -z "$logs" ] && [ -f "$B/berthd.log" ] && logs=" $B/berthd.log"
    say "FAILED while $PHASE (exit status $rc)${logs:+; logs:$logs}"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A --keep run may have left berthd and the env running: start from a clean env every time.
if [ -n "$(berthd_pid)" ] || "$C/run.sh" "$W" status >/dev/null 2>&1; then
  say "stopping berthd and the env a previous run left in $W"
  teardown
fi

T0=$SECONDS
say "harness $C, work dir $W"
"$C/setup.sh" "$W"

PHASE="building berthd"
say "building berthd (cargo build --release -p berth-daemon --bins, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --release -p berth-daemon --bins
[ -x "$BERTHD" ] || die "$BERTHD was not built"
T_BUILD=$SECONDS

PHASE="starting the env"
# 9>&-: the daemons the env starts must not inherit (and so hold) the lock
"$C/run.sh" "$W" start-env 9>&-
# shellcheck disable=SC1091 # written by start-env
. "$W/env/env.sh"
CR=("$CRITEST_CRICTL" --config "$W/env/critest-config.yaml" --timeout 10s
  --runtime-endpoint "unix://$BSOCK" --image-endpoint "unix://$CRITEST_CONTAINERD_SOCKET")

PHASE="starting berthd"
rm -rf "$B/root" "$B/state" "$BSOCK" "$BSOCK.lock"
mkdir -p "$B"
cat > "$B/berthd.toml" <<EOF
# written by scripts/conformance.sh: berthd on the critest env's containerd
socket = "$BSOCK"
containerd_socket = "$CRITEST_CONTAINERD_SOCKET"
containerd_namespace = "k8s.io"
root_dir = "$B/root"
state_dir = "$B/state"
sandbox_image = "$CRITEST_SANDBOX_IMAGE"
log_level = "info"
EOF
setsid "$BERTHD" --config "$B/berthd.toml" > "$B/berthd.log" 2>&1 < /dev/null 9>&- &
BERTHD_PID=$!
echo "$BERTHD_PID" > "$B/berthd.pid"
# berthd answers Unavailable until it has reached containerd and finished recovery
ok=0
for _ in $(seq 1 150); do
  [ -n "$(berthd_pid)" ] || { tail -n 20 "$B/berthd.log" >&2; die "berthd exited during startup (log: $B/berthd.log)"; }
  if "${CR[@]}" pods >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.2
done
[ "$ok" = 1 ] || { tail -n 20 "$B/berthd.log" >&2; die "berthd did not serve crictl pods within 30 s (log: $B/berthd.log)"; }
say "berthd (pid $BERTHD_PID) serves unix://$BSOCK; started in $((SECONDS - T_BUILD)) s with the env"
if [ "$SERVE" = 1 ]; then
  PHASE="serving"
  say "serving: berthd unix://$BSOCK, containerd's CRI unix://$CRITEST_CONTAINERD_SOCKET (env file $W/env/env.sh)"
  exit 0
fi

PHASE="running critest"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# results of an earlier run into the same dir must not be judged
rm -f "$OUT"/{report.json,junit.xml,summary.txt,run-info.txt,critest.log,berthd.log,proxy-stats.json,proxy-summary.txt,criproxy.log,containerd.log}
args=(--runtime-endpoint "unix://$BSOCK" --image-endpoint containerd --proxy --timeout "$TIMEOUT" --out "$OUT")
for f in "${FOCUS[@]}"; do args+=(--focus "$f"); done
for s in "${SKIP[@]}"; do args+=(--skip "$s"); done
[ -n "$SEED" ] && args+=(--seed "$SEED")
set +e
"$C/run.sh" "$W" "${args[@]}" 9>&-
rc=$?
set -e
critest_rc=$(sed -n 's/^critest_rc=//p' "$OUT/run-info.txt" 2>/dev/null || true)
wall=$(sed -n 's/^wall_s=//p' "$OUT/run-info.txt" 2>/dev/null || true)

PHASE="judging the report"
[ -s "$OUT/report.json" ] || die "the critest run broke: no $OUT/report.json (run.sh exit status $rc)"
case ${critest_rc:-missing} in
  0|1) ;;
  124) die "the critest run broke: critest hit the ${TIMEOUT} s deadline (BERTH_CRITEST_TIMEOUT)" ;;
  *) die "the critest run broke: critest exit status ${critest_rc:-missing} (0 or 1 expected; run.sh exit status $rc)" ;;
esac
[ "$rc" = "$critest_rc" ] || die "the critest run broke: run.sh exit status $rc after critest exited $critest_rc"

PHASE="checking $EXPECTED"
echo
[ "${#FOCUS[@]}" -gt 0 ] || [ "${#SKIP[@]}" -gt 0 ] && filtered=1 || filtered=0
python3 - "$OUT/report.json" "$EXPECTED" "$filtered" <<'PY'
import json, sys

FAILED = {"failed", "panicked", "timedout", "interrupted", "aborted"}
report, expected_path, filtered = sys.argv[1], sys.argv[2], sys.argv[3] == "1"


def first_line(msg):
    lines = [l.strip() for l in (msg or "").splitlines() if l.strip()]
    if not lines:
        return ""
    text = lines[0]
    if text.endswith(":"):  # gomega's "Unexpected error:" is followed by an object dump
        for l in lines[1:6]:
            if not l.startswith(("<", "{", "}")):
                text += " " + l
                break
    return text[:400]


specs, broken = {}, []
for suite in json.load(open(report)):
    for r in suite.get("SpecReports") or []:
        fail = r.get("Failure") or {}
        state = r.get("State", "?")
        if r.get("LeafNodeType") != "It":
            if state in FAILED:
                broken.append("%s: %s" % (r.get("LeafNodeType"), first_line(fail.get("Message"))))
            continue
        name = " ".join((r.get("ContainerHierarchyTexts") or []) + [r.get("LeafNodeText", "")])
        loc = fail.get("Location") or {}
        where = " [%s:%s]" % (loc.get("FileName", "").rsplit("/", 1)[-1], loc.get("LineNumber", "")) if loc else ""
        # a spec name critest reports twice counts as passed only if every instance passed
        prev = specs.get(name)
        if prev is None or prev[0] == "passed":
            specs[name] = (state, first_line(fail.get("Message")) + where)

expected, flaky = [], set()
for line in open(expected_path, encoding="utf-8"):
    line = line.strip()
    if line.startswith("# flaky:"):  # known flaky: neither judged nor offered as newly passing
        flaky.add(line[len("# flaky:"):].strip())
    elif line and not line.startswith("#"):
        expected.append(line)

not_passed, not_selected = [], 0
for name in expected:
    st = specs.get(name)
    if st is None:
        not_passed.append((name, "not in critest's report (renamed, or a typo in expected-pass.txt?)"))
    elif st[0] == "passed":
        continue
    elif st[0] == "skipped" and filtered and not st[1].strip():
        not_selected += 1  # left out by --focus/--skip (a Skip() at run time has a message)
    else:
        not_passed.append((name, "%s: %s" % (st[0], st[1] or "(no message)")))

exp = set(expected)
passed = sorted(n for n, s in specs.items() if s[0] == "passed")
ran = sum(1 for s in specs.values() if s[0] == "passed" or s[0] in FAILED)
new = [n for n in passed if n not in exp and n not in flaky]

if broken:
    print("conformance: the run broke in a suite node:")
    for b in broken:
        print("  " + b)
if new:
    print("conformance: newly passing (%d): add them to conformance/expected-pass.txt:" % len(new))
    for n in new:
        print(n)
    print()
for n in sorted(flaky):
    if n in specs:
        print("conformance: known flaky, not judged: %s (%s)" % (n, specs[n][0]))
if not_passed:
    print("conformance: EXPECTED SPECS THAT DID NOT PASS (%d):" % len(not_passed))
    for n, why in not_passed:
        print("  - " + n)
        print("      " + why)
    print()
judged = len(expected) - not_selected
tail = "; %d expected specs not selected by --focus/--skip" % not_selected if not_selected else ""
print("conformance: %d/%d expected specs passed (berthd passed %d of %d specs run%s)"
      % (judged - len(not_passed), judged, len(passed), ran, tail))
sys.exit(1 if not_passed or broken else 0)
PY
say "results in $OUT (summary.txt, report.json, critest.log, proxy-summary.txt, berthd.log); critest took ${wall:-?} s, the whole gate $((SECONDS - T0)) s"
PHASE="done"
