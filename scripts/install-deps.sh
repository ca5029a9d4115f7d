#!/bin/sh
# Installs the Debian packages svemig needs, only those missing.
#   scripts/install-deps.sh [base|rig|all]
# base: build, unit and integration tests; rig: the arm64 KVM rig (QEMU,
# the aarch64 cross toolchain and arm64 multiarch -dev packages).
set -eu

BASE="meson ninja-build pkg-config gcc clang clang-format git python3 protobuf-c-compiler libprotobuf-c-dev \
liblz4-dev lz4 libsystemd-dev systemd libcmocka-dev libinih-dev libxxhash-dev libjson-c-dev \
libclang-rt-14-dev linux-libc-dev-arm64-cross libcurl4-openssl-dev curl openssl nginx-light radosgw ceph-mon \
ceph-osd ceph-common"
RIG="qemu-system-arm gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross \
linux-libc-dev-arm64-cross cpio"
RIG_ARM64="libprotobuf-c-dev:arm64 liblz4-dev:arm64 libinih-dev:arm64 libxxhash-dev:arm64 \
libjson-c-dev:arm64 libsystemd-dev:arm64 libcmocka-dev:arm64"

case "${1:-base}" in
base) want="$BASE" ;;
rig) want="$RIG $RIG_ARM64" ;;
all) want="$BASE $RIG $RIG_ARM64" ;;
*) echo "usage: $0 [base|rig|all]" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
        command -v sudo >/dev/null || {
                echo "svemig needs these Debian packages:$missing" >&2
                echo "Run this script as root, or install them yourself." >&2
                exit 1
        }
else
        SUDO=
fi

echo "Installing:$missing"
case "$missing" in
*:arm64*)
        dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64 ;;
esac
export DEBIAN_FRONTEND=noninteractive
# Another apt (a parallel build, unattended-upgrades) may hold the lock: wait for it.
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
# shellcheck disable=SC2086
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing
