#!/bin/sh
# Fetches the parts of an emulated arm64 host into the rig cache, once:
# Debian's newest cloud arm64 kernel of a series (KVM=y, SVE=y) and
# busybox-static, both arm64 packages downloaded with apt-get and unpacked with
# dpkg -x (never installed). Later runs reuse the cache.
#   tests/arm64/fetch-host.sh CACHE_DIR [SERIES]
# SERIES is 6.1 (bookworm, linux-image-6.1.0-N-cloud-arm64-unsigned; the
# default) or 6.12 (bookworm-security, linux-image-6.12.N+deb12-cloud-arm64-unsigned).
# Prints two lines: "kernel PATH-TO-VMLINUZ" and "busybox PATH-TO-BUSYBOX".
set -eu

cache=${1:?usage: $0 CACHE_DIR [SERIES]}
series=${2:-6.1}
case $series in
6.1) kpattern='^linux-image-6\.1\.0-[0-9]+-cloud-arm64-unsigned$' kglob='linux-image-6.1.0-*-cloud-arm64-unsigned' ;;
6.12) kpattern='^linux-image-6\.12\.[0-9]+\+deb12-cloud-arm64-unsigned$' kglob='linux-image-6.12.*+deb12-cloud-arm64-unsigned' ;;
*) echo "fetch-host: unknown kernel series '$series' (6.1 or 6.12)" >&2; exit 2 ;;
esac
mkdir -p "$cache/debs"

say() { echo "rig: $*" >&2; }

# The arm64 package lists are there once arm64 is a foreign architecture
# (scripts/install-deps.sh rig adds it); a stale list may still lack them.
ensure_lists() {
        if ! dpkg --print-foreign-architectures | grep -qx arm64; then
                [ "$(id -u)" -eq 0 ] || { say "arm64 is not a dpkg architecture; run scripts/install-deps.sh rig as root"; exit 1; }
                dpkg --add-architecture arm64
                apt-get update -qq
        fi
}

# The newest kernel package of the series apt knows of.
newest_kernel() {
        apt-cache search --names-only "$kpattern" |
                awk '{print $1}' | sort -V | tail -n 1
}

# Unpacks package $1 (arm64) into $cache/$2 unless it is there already.
unpack() {
        pkg=$1 dir=$cache/$2
        [ -f "$dir/.unpacked" ] && return 0
        rm -rf "$dir"
        # As root, apt's _apt sandbox user cannot write the cache; say so once.
        sandbox=
        [ "$(id -u)" -eq 0 ] && sandbox="-o APT::Sandbox::User=root"
        # shellcheck disable=SC2086
        (cd "$cache/debs" && apt-get download -qq $sandbox "$pkg:arm64") >&2
        deb=$(ls -t "$cache/debs/${pkg}_"*_arm64.deb | head -n 1)
        dpkg -x "$deb" "$dir"
        rm -f "$deb"
        touch "$dir/.unpacked"
}

ensure_lists
kpkg=$(newest_kernel)
if [ -z "$kpkg" ]; then
        apt-get update -qq >&2 || true
        kpkg=$(newest_kernel)
fi
if [ -z "$kpkg" ]; then
        # No list at all (offline): reuse whatever kernel the cache holds.
        # shellcheck disable=SC2086
        kpkg=$(ls -d "$cache"/$kglob 2>/dev/null | sort -V | tail -n 1)
        kpkg=${kpkg##*/}
        [ -n "$kpkg" ] || { say "apt lists no $kglob and the cache has none"; exit 1; }
fi
unpack "$kpkg" "$kpkg"
unpack busybox-static busybox-static

vmlinuz=$(ls "$cache/$kpkg"/boot/vmlinuz-* | head -n 1)
echo "kernel $vmlinuz"
echo "busybox $cache/busybox-static/bin/busybox"
