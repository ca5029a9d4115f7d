#!/bin/sh
# Imports the kernel's arm64 KVM uapi headers into src/uapi/, so that svemig
# takes every arm64 KVM constant from the kernel even when it is built on a
# host that is not arm64 (DESIGN.md: "Do not retype the kernel's constants by
# hand"). This is what QEMU's scripts/update-linux-headers.sh and kvmtool's
# imported headers do.
#
#   scripts/update-kvm-headers.sh [INCLUDE_DIR]
#
# INCLUDE_DIR defaults to /usr/aarch64-linux-gnu/include, which Debian's
# linux-libc-dev-arm64-cross fills (scripts/install-deps.sh installs it).
#
# What is imported:
#   src/uapi/arm64/asm/  asm/kvm.h, asm/sve_context.h and every arm64 asm/
#                        header they include, their '#include <asm/X>' lines
#                        rewritten to '#include "X"' (the copy beside them);
#   src/uapi/linux/kvm.h the generic linux/kvm.h, its '#include <asm/kvm.h>'
#                        rewritten to the imported arm64 copy. The host's own
#                        <linux/kvm.h> cannot be used on x86: it includes the
#                        host's <asm/kvm.h>, whose struct kvm_regs and friends
#                        clash with the arm64 ones.
# The remaining includes (<linux/types.h>, <linux/ioctl.h>, <linux/psci.h>,
# ...) are architecture-independent and come from the host's linux-libc-dev.
# src/uapi/VERSION records the Debian package and version imported.
set -eu

SRC=${1:-/usr/aarch64-linux-gnu/include}
TOP=$(cd "$(dirname "$0")/.." && pwd)
DST="$TOP/src/uapi"
ROOTS="asm/kvm.h asm/sve_context.h"

die() {
        echo "update-kvm-headers: $*" >&2
        exit 1
}

if [ ! -f "$SRC/asm/kvm.h" ] || [ ! -f "$SRC/linux/kvm.h" ]; then
        die "$SRC has no asm/kvm.h or linux/kvm.h: install linux-libc-dev-arm64-cross (scripts/install-deps.sh) or pass the arm64 include directory"
fi
grep -q 'KVM_REG_ARM64_SVE' "$SRC/asm/kvm.h" ||
        die "$SRC/asm/kvm.h is not the arm64 one (no KVM_REG_ARM64_SVE)"

# The Debian package that owns the headers, and its version.
pkg=$(dpkg-query -S "$SRC/asm/kvm.h" 2>/dev/null | sed -n '1s/:.*//p' || true)
if [ -n "$pkg" ]; then
        version=$(dpkg-query -W -f='${Version}' "$pkg")
else
        pkg="(not from a Debian package)"
        version="unknown"
fi

# asm/ headers included by a header, one name a line ("ptrace.h").
asm_includes() {
        sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*<asm\/\([^>]*\)>.*/\1/p' "$1"
}

# The closure of ROOTS over '#include <asm/...>'.
todo=""
for r in $ROOTS; do
        todo="$todo ${r#asm/}"
done
done_list=""
while [ -n "$todo" ]; do
        # shellcheck disable=SC2086 # split the work list into words
        set -- $todo
        h=$1
        shift
        todo="$*"
        case " $done_list " in
        *" $h "*) continue ;;
        esac
        [ -f "$SRC/asm/$h" ] || die "$SRC/asm/$h (included by the arm64 headers) is missing"
        done_list="$done_list $h"
        todo="$todo $(asm_includes "$SRC/asm/$h" | tr '\n' ' ')"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/arm64/asm" "$tmp/linux"

files=""
# shellcheck disable=SC2086 # split the list into words
for h in $(printf '%s\n' $done_list | sort); do
        sed -e 's/^\([[:space:]]*#[[:space:]]*include[[:space:]]*\)<asm\/\([^>]*\)>/\1"\2"/' \
                "$SRC/asm/$h" >"$tmp/arm64/asm/$h"
        files="$files arm64/asm/$h"
done
sed -e 's/^\([[:space:]]*#[[:space:]]*include[[:space:]]*\)<asm\/kvm\.h>/\1"..\/arm64\/asm\/kvm.h"/' \
        "$SRC/linux/kvm.h" >"$tmp/linux/kvm.h"
grep -q '"../arm64/asm/kvm.h"' "$tmp/linux/kvm.h" || die "$SRC/linux/kvm.h does not include <asm/kvm.h>"
files="$files linux/kvm.h"

{
        echo "# Imported by scripts/update-kvm-headers.sh: do not edit these headers by hand."
        echo "package: $pkg"
        echo "version: $version"
        echo "source: $SRC"
        for f in $files; do
                echo "file: $f"
        done
} >"$tmp/VERSION"

rm -rf "$DST/arm64" "$DST/linux" "$DST/VERSION"
mkdir -p "$DST"
cp -R "$tmp/arm64" "$tmp/linux" "$tmp/VERSION" "$DST/"
echo "update-kvm-headers: imported$files from $pkg $version into src/uapi/"
