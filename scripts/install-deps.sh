#!/bin/sh
# Installs what berth's integration tests need on Debian 12, and nothing that is already there.
#
#   scripts/install-deps.sh        # as root; quiet; exit 0 when everything is present
#
# Packages: containerd (brings containerd-shim-runc-v2 and ctr), runc, busybox-static (the test
# image's only binary), protobuf-compiler (containerd-client's build script runs protoc), plus the
# tools scripts/build-image.sh uses (tar, gzip, sha256sum) and mount/umount for the storage tests.
# `apt-get update` runs at most once, and only when something is missing.
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: must run as root (uid 0), not uid $(id -u): containerd and runc need root" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
    echo "install-deps.sh: apt-get/dpkg-query not found; this script supports Debian 12 only" >&2
    exit 1
fi

# package -> a file that proves it works (a package can be "installed" with the file removed).
want="
containerd:/usr/bin/containerd
containerd:/usr/bin/containerd-shim-runc-v2
containerd:/usr/bin/ctr
runc:/usr/sbin/runc
busybox-static:/bin/busybox
protobuf-compiler:/usr/bin/protoc
tar:/bin/tar
gzip:/bin/gzip
coreutils:/usr/bin/sha256sum
mount:/bin/mount
"

missing=""
for entry in $want; do
    pkg=${entry%%:*}
    file=${entry#*:}
    status=$(dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ] || [ ! -x "$file" ]; then
        case " $missing " in
            *" $pkg "*) ;;
            *) missing="$missing $pkg" ;;
        esac
    fi
done

# The image needs a *static* busybox: the dynamically linked `busybox` package also ships
# /bin/busybox, and it conflicts with busybox-static, so installing the latter replaces it.
if [ -x /bin/busybox ] && [ "$(dpkg-query -W -f '${Status}' busybox-static 2>/dev/null || true)" != "install ok installed" ]; then
    case " $missing " in *" busybox-static "*) ;; *) missing="$missing busybox-static" ;; esac
fi

if [ -z "$missing" ]; then
    exit 0
fi

echo "install-deps.sh: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/berth-install-deps.XXXXXX)
# shellcheck disable=SC2086 # word splitting of the package list is intended
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } >"$log" 2>&1; then
    echo "install-deps.sh: apt-get failed installing:$missing; its output:" >&2
    tail -n 30 "$log" >&2
    rm -f "$log"
    exit 1
fi
rm -f "$log"

for entry in $want; do
    file=${entry#*:}
    if [ ! -x "$file" ]; then
        echo "install-deps.sh: $file is still missing after installing:$missing" >&2
        exit 1
    fi
done
