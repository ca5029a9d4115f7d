#!/bin/sh
# Builds the gzipped newc initramfs of an emulated arm64 rig host.
#   tests/arm64/mkinitramfs.sh OUT.gz STAGE_DIR BUSYBOX [INIT]
# The archive holds busybox-static (its applets are linked by /init at boot,
# since an arm64 busybox cannot run here), tests/arm64/init (or INIT) as /init, and the
# tree STAGE_DIR (programs under bin/, /rig/cases, input files). Every
# dynamically linked aarch64 ELF in STAGE_DIR gets its loader and the shared
# libraries it needs, found in the cross and multiarch library directories.
set -eu

out=${1:?usage: $0 OUT.gz STAGE_DIR BUSYBOX}
stage=${2:?}
busybox=${3:?}
here=$(cd "$(dirname "$0")" && pwd)
init=${4:-$here/init}
LIBDIRS="/usr/aarch64-linux-gnu/lib /usr/lib/aarch64-linux-gnu /lib/aarch64-linux-gnu"
READELF=aarch64-linux-gnu-readelf

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/lib" "$root/rig/out"
cp -R "$stage"/. "$root"/
cp "$busybox" "$root/bin/busybox"
cp "$init" "$root/init"
chmod 755 "$root/init" "$root/bin/busybox"

is_elf() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }

find_lib() {
        for d in $LIBDIRS; do
                [ -e "$d/$1" ] && { echo "$d/$1"; return 0; }
        done
        return 1
}

# Copies the libraries ELF $1 needs, and theirs, into /lib.
copy_needed() {
        for lib in $($READELF -d "$1" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
                [ -e "$root/lib/$lib" ] && continue
                path=$(find_lib "$lib") || { echo "mkinitramfs: $1 needs $lib, which no arm64 library directory has" >&2; exit 1; }
                cp -L "$path" "$root/lib/$lib"
                copy_needed "$root/lib/$lib"
        done
}

find "$root" -type f | while read -r f; do
        [ "$f" = "$root/bin/busybox" ] && continue
        is_elf "$f" || continue
        if $READELF -l "$f" 2>/dev/null | grep -q 'Requesting program interpreter'; then
                [ -e "$root/lib/ld-linux-aarch64.so.1" ] ||
                        cp -L "$(find_lib ld-linux-aarch64.so.1)" "$root/lib/ld-linux-aarch64.so.1"
                copy_needed "$f"
        fi
done

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -1 >"$out.tmp"
mv "$out.tmp" "$out"
