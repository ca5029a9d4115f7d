#!/bin/sh
# Boots one emulated arm64 host (QEMU TCG, EL2, GICv3) running Debian's
# kernel with KVM, and saves its console.
#   tests/arm64/boot-host.sh NAME SVE MODE VLS KERNEL INITRD LOG
# SVE is the -cpu SVE option list ("sve=on,sve128=on,sve256=on" or "sve=off"),
# MODE is vhe or nvhe (kvm-arm.mode=nvhe), VLS the set QEMU's options imply,
# handed to /init as rig.vls= so that the cases can check it.
# RIG_NETDEV, when set, is a QEMU -netdev backend ("socket,listen=127.0.0.1:PORT"
# or "socket,connect=...") given to the host as a virtio-net device (virtio-mmio)
# with MAC RIG_MAC; RIG_APPEND adds to the kernel command line.
# Exits with QEMU's status; 124 when the boot outlived RIG_BOOT_TIMEOUT.
set -eu

name=$1 sve=$2 mode=$3 vls=$4 kernel=$5 initrd=$6 log=$7

append="console=ttyAMA0 rdinit=/init panic=-1 loglevel=3 rig.host=$name rig.mode=$mode rig.vls=$vls ${RIG_APPEND:-}"
case $mode in
vhe) ;;
nvhe) append="$append kvm-arm.mode=nvhe" ;;
*) echo "boot-host: unknown KVM mode '$mode' (vhe or nvhe)" >&2; exit 2 ;;
esac

set -- -nic none
[ -z "${RIG_NETDEV:-}" ] ||
        set -- -netdev "$RIG_NETDEV,id=link" -device "virtio-net-device,netdev=link,mac=${RIG_MAC:-52:54:00:12:34:56}"

# pauth-impdef=on: QEMU's architected pointer-auth algorithm triples boot time.
exec timeout -k 5 "${RIG_BOOT_TIMEOUT:-900}" qemu-system-aarch64 \
        -M virt,virtualization=on,gic-version=3 \
        -cpu "max,$sve,pauth-impdef=on" \
        -smp 2 -m 1024 -accel tcg,thread=multi \
        -display none "$@" -no-reboot -monitor none -serial stdio \
        -kernel "$kernel" -initrd "$initrd" -append "$append" \
        </dev/null >"$log" 2>&1
