#!/bin/sh
# Builds berth's busybox test image locally (no registry) and optionally imports it.
#
#   scripts/build-image.sh                  # prints the path of the cached OCI image tar
#   scripts/build-image.sh import SOCK NS   # also imports it into containerd at SOCK, namespace NS,
#                                           # unpacked into the overlayfs snapshotter
#   scripts/build-image.sh ref              # prints the image reference
#
# The image: one gzip layer holding /bin/busybox from Debian's busybox-static, one symlink per
# applet in /bin (sh, sleep, echo, true, false, cat, ls, env, ...), empty /dev /proc /sys /tmp
# /root, a minimal /etc/passwd and /etc/group. Config: Cmd ["sh"], Env PATH. It is an OCI image
# layout tar (oci-layout, index.json, blobs/sha256/...), byte-for-byte reproducible, cached as
#   ${BERTH_CACHE_DIR:-$HOME/.cache/berth}/berth-busybox-<busybox version>-<arch>-f<format>.tar
# (plus <that>.diff-id, the layer's uncompressed digest, used to verify the unpack).
# Concurrent runs are safe: each builds in its own temp dir and renames into place.
set -eu

REF="docker.io/library/berth-busybox:latest"
FORMAT=1                        # bump when the image content or layout below changes
BUSYBOX=/bin/busybox

die() { echo "build-image.sh: $*" >&2; exit 1; }

[ -x "$BUSYBOX" ] || die "$BUSYBOX not found; run scripts/install-deps.sh (package busybox-static)"

version=$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null) \
    || die "package busybox-static is not installed; run scripts/install-deps.sh"
arch=$(dpkg --print-architecture)
case "$arch" in
    i386) goarch=386 ;;
    armhf | armel) goarch=arm ;;
    ppc64el) goarch=ppc64le ;;
    *) goarch=$arch ;;
esac

cache=${BERTH_CACHE_DIR:-${HOME:-/root}/.cache/berth}
safe_version=$(printf '%s' "$version" | tr -c 'A-Za-z0-9.+-' '_')
out="$cache/berth-busybox-$safe_version-$arch-f$FORMAT.tar"

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

build() {
    mkdir -p "$cache"
    work=$(mktemp -d "$cache/.build.XXXXXX")
    trap 'rm -rf "$work"' EXIT INT TERM
    root="$work/rootfs"
    mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/tmp" "$root/root" "$root/etc"
    chmod 1777 "$root/tmp"
    chmod 0700 "$root/root"
    cp "$BUSYBOX" "$root/bin/busybox"
    chmod 0755 "$root/bin/busybox"
    for applet in $("$BUSYBOX" --list); do
        [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
    done
    for a in sh sleep echo true false cat ls env; do
        [ -L "$root/bin/$a" ] || die "busybox $version has no applet '$a'"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

    # Reproducible layer: fixed order, times and owners; gzip without name or time stamp.
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
        -C "$root" -cf "$work/layer.tar" bin dev etc proc root sys tmp
    diff_id=$(sha "$work/layer.tar")
    gzip -n -6 "$work/layer.tar"
    blobs="$work/oci/blobs/sha256"
    mkdir -p "$blobs"
    layer_digest=$(sha "$work/layer.tar.gz")
    layer_size=$(size "$work/layer.tar.gz")
    mv "$work/layer.tar.gz" "$blobs/$layer_digest"

    printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"berth scripts/build-image.sh: busybox-static %s"}]}' \
        "$goarch" "$diff_id" "$version" >"$work/config.json"
    config_digest=$(sha "$work/config.json")
    config_size=$(size "$work/config.json")
    mv "$work/config.json" "$blobs/$config_digest"

    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
        "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$work/manifest.json"
    manifest_digest=$(sha "$work/manifest.json")
    manifest_size=$(size "$work/manifest.json")
    mv "$work/manifest.json" "$blobs/$manifest_digest"

    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"latest"},"platform":{"architecture":"%s","os":"linux"}}]}' \
        "$manifest_digest" "$manifest_size" "$REF" "$goarch" >"$work/oci/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"

    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
        -C "$work/oci" -cf "$work/image.tar" oci-layout index.json blobs
    # The diff id sidecar first: whoever sees the tar also finds it.
    echo "sha256:$diff_id" >"$work/diff-id"
    mv -f "$work/diff-id" "$out.diff-id"
    mv -f "$work/image.tar" "$out"
    rm -rf "$work"
    trap - EXIT INT TERM
}

[ -s "$out" ] && [ -s "$out.diff-id" ] || build

case "${1:-path}" in
    path)
        echo "$out"
        ;;
    ref)
        echo "$REF"
        ;;
    import)
        [ $# -eq 3 ] || die "usage: build-image.sh import SOCK NAMESPACE"
        sock=$2
        ns=$3
        if ! msg=$(ctr -a "$sock" -n "$ns" images import --snapshotter overlayfs "$out" 2>&1); then
            die "ctr images import of $out into $sock namespace $ns failed: $msg"
        fi
        # Verify the unpack: the layer's snapshot (chain id = diff id for one layer) must exist.
        diff_id=$(cat "$out.diff-id")
        if ! ctr -a "$sock" -n "$ns" snapshots --snapshotter overlayfs info "$diff_id" >/dev/null 2>&1; then
            die "image $REF imported into $ns but not unpacked into overlayfs (no snapshot $diff_id)"
        fi
        echo "$REF"
        ;;
    *)
        die "usage: build-image.sh [path | ref | import SOCK NAMESPACE]"
        ;;
esac
