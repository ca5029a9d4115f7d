#!/bin/sh
# Installs the Debian packages svemig needs, only those missing.
#   scripts/install-deps.sh [base|rig|libvirt|all]
# base: build, unit and integration tests; rig: the arm64 KVM rig (QEMU,
# the aarch64 cross toolchain and arm64 multiarch -dev packages); libvirt:
# the real-libvirt tests (tests/libvirt: libvirtd with its QEMU driver,
# virsh, QEMU for aarch64 guests, the cross compiler for their probe).
set -eu

BASE="meson ninja-build pkg-config gcc clang clang-format git python3 protobuf-c-compiler libprotobuf-c-dev \
liblz4-dev lz4 libsystemd-dev systemd libcmocka-dev libinih-dev libxxhash-dev libjson-c-dev \
libclang-rt-14-dev linux-libc-dev-arm64-cross libvirt-dev libxml2-dev libcurl4-openssl-dev etcd-server etcd-client libgnutls28-dev openssl libfdt-dev zlib1g-dev \
curl nginx-light radosgw ceph-mon ceph-osd ceph-common"
RIG="qemu-system-arm gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross \
linux-libc-dev-arm64-cross cpio"
LIBVIRT="libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-arm gcc-aarch64-linux-gnu \
libc6-dev-arm64-cross cpio"
RIG_ARM64="libprotobuf-c-dev:arm64 liblz4-dev:arm64 libinih-dev:arm64 libxxhash-dev:arm64 \
libjson-c-dev:arm64 libsystemd-dev:arm64 libcmocka-dev:arm64 libcurl4-openssl-dev:arm64 libgnutls28-dev:arm64 libxml2-dev:arm64 libfdt1:arm64 zlib1g-dev:arm64"

case "${1:-base}" in
base) want="$BASE" ;;
rig) want="$RIG $RIG_ARM64" ;;
libvirt) want="$LIBVIRT" ;;
all) want="$BASE $RIG $LIBVIRT $RIG_ARM64" ;;
*) echo "usage: $0 [base|rig|libvirt|all]" >&2; exit 2 ;;
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

# apt-get, tried again while another apt or dpkg holds its lock (an unattended
# upgrade, a second build), for up to 10 minutes; any other failure is final.
apt_get() {
        tries=0
        while :; do
                log=$(mktemp)
                if $SUDO apt-get -o DPkg::Lock::Timeout=60 "$@" 2>"$log"; then
                        rm -f "$log"
                        return 0
                fi
                if ! grep -qE 'Could not get lock|Unable to (acquire|lock)|is another process using it' "$log"; then
                        cat "$log" >&2
                        rm -f "$log"
                        return 1
                fi
                rm -f "$log"
                tries=$((tries + 1))
                if [ "$tries" -ge 10 ]; then
                        echo "apt-get $*: another apt still holds its lock after 10 minutes" >&2
                        return 1
                fi
                echo "apt-get $1: another apt holds its lock; waiting for it ($tries)" >&2
                sleep 5
        done
}

apt_get update -qq
# shellcheck disable=SC2086
apt_get install -y -qq --no-install-recommends $missing
