#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""make demo's libvirt part: svemig beside real libvirtd, as an operator sees it.

Two simulated hosts, hosta {128,256,512} and hostb {128,256}, each a svemigd
(sim backend) and a libvirtd of its own, started as the libvirt tests start
them (tests/libvirt/libvirtrig.py: root, a private mount namespace, the
system's /etc, /var and /run untouched) with svemig's hook installed in the
private /etc/libvirt/hooks/qemu.d/. The guests are aarch64 TCG domains
booting Debian's arm64 kernel and a busybox initramfs that prints the SVE
lengths it sees. Shown: a 512-bit domain refused at start on hostb, a domain
pinned to the cluster's set, started, and live-migrated to hostb, and an
unpinned 512-bit domain stuck on hosta (its migration refused by hostb's
hook). Everything it starts is stopped and removed at the end, or on ^C.

    scripts/demo-libvirt.py BUILD_DIR
"""

import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
os.environ.update(SVEMIGD=os.path.join(BUILD, "daemon", "svemigd"),
                  SVEMIGCTL=os.path.join(BUILD, "daemon", "svemigctl"),
                  SVEMIG_LIBVIRT_HOOK=os.path.join(BUILD, "daemon", "svemig-libvirt-hook"))
sys.path[:0] = [os.path.join(SRC, "tests", "libvirt"), os.path.join(SRC, "tests", "daemon")]

import libvirtrig as rig  # noqa: E402  (after the environment it reads)


def on_sigterm(signum, frame):
    # svemigtest's own handler is for tests; here the cleanup below must run.
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, on_sigterm)


def step(title):
    print("\n\033[1m### %s\033[0m" % title, flush=True)


def say(text):
    print(text, flush=True)


class Shell:
    """Runs a command as an operator would on one host: virsh and svemigctl reach that
    host's libvirtd and svemigd through LIBVIRT_DEFAULT_URI and SVEMIG_SOCKET."""

    def __init__(self, host):
        self.host = host
        self.env = dict(os.environ, LIBVIRT_DEFAULT_URI=host.uri, SVEMIG_SOCKET=host.svemig_sock,
                        PATH=os.path.dirname(os.environ["SVEMIGCTL"]) + ":" + os.environ.get("PATH", ""))

    def __call__(self, command, shown=None, expect_fail=False):
        print("%s$ %s" % (self.host.name, shown or command), flush=True)
        r = subprocess.run(command, shell=True, env=self.env, capture_output=True, text=True, timeout=rig.WAIT)
        out = (r.stdout.strip("\n") + "\n" + r.stderr.strip("\n")).strip("\n")
        if out:
            say(out)
        if expect_fail:
            say("(exit code %d)" % r.returncode)
            if r.returncode == 0:
                raise SystemExit("demo: %s succeeded; it should have been refused" % command)
        elif r.returncode != 0:
            raise SystemExit("demo: %s failed (%d):\n%s%s" % (command, r.returncode, r.stdout, r.stderr))
        sys.stdout.flush()
        return r


def cpu_of(xml_path):
    with open(xml_path) as f:
        m = re.search(r"<cpu.*?</cpu>", f.read(), re.S)
    return m.group(0) if m else "(no <cpu>: libvirt's default CPU)"


def main():
    why = rig.missing()
    if not why and not os.path.exists(os.path.join(BUILD, "daemon", "svemigctl-libvirt")):
        why = "svemig was built without libvirt (meson -Dlibvirt=disabled)"
    if why:
        say("\nThe libvirt part is skipped: %s." % why)
        return 0
    hosts = []
    with tempfile.TemporaryDirectory(prefix="svemig-demo-libvirt-") as work:
        os.chmod(work, 0o755)
        try:
            tour(work, hosts)
        finally:
            # A second ^C must not cut the cleanup short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            step("Everything torn down: domains destroyed, both libvirtd and svemigd stopped")
            for h in hosts:
                try:
                    h.stop()
                except Exception as e:  # the others still go; what is left of this one, below
                    say("%s: %s" % (h.name, e))
            rig.kill_qemus_under(work)
            say("all stopped; %s removed" % work)
    return 0


def tour(work, hosts):
    step("Real libvirt: two hosts, each a libvirtd beside a svemigd (sim backend)")
    say("The guests' kernel and initramfs: Debian's arm64 kernel and busybox (fetched once into\n"
        "tests/arm64/cache), and a probe that prints the SVE lengths the guest can set.")
    kernel, initrd = rig.guest_parts(SRC, work)
    rig.start_two_hosts(work, hosts)
    a, b = hosts
    sa, sb = Shell(a), Shell(b)
    for h in (a, b):
        say("%s: SVE %s bits, in %s:\n"
            "    libvirtd as root in a mount namespace of its own (private /etc/libvirt, /var, /run),\n"
            "    its socket sock/libvirt-sock; svemigd (sim backend) on svemigd.sock, peer of the other" %
            (h.name, h.vq_map, h.dir))
    say("On the lines below, 'hostX$' runs the command with LIBVIRT_DEFAULT_URI and SVEMIG_SOCKET\n"
        "naming that host's libvirtd and svemigd, as on a host of its own.")

    step("svemig's hook, as installed in each host's /etc/libvirt/hooks/qemu.d/")
    hook = os.path.join(a.dir, "etc-libvirt", "hooks", "qemu.d", "svemig")
    say("hosta$ cat /etc/libvirt/hooks/qemu.d/svemig    # libvirtd's private /etc/libvirt: %s" % hook)
    with open(hook) as f:
        say(f.read().rstrip())
    say("(libvirtd gives hooks a clean environment: the wrapper names this host's svemigd)")

    step("The cluster as hostb's svemigd sees it: the guest set is 128,256")
    sb("svemigctl cluster")

    step("A domain that requires 512-bit vectors, refused at start on hostb by svemig's hook")
    b.define(work, "wide", kernel, initrd, rig.sve_cpu([128, 256, 512]))
    say("hostb$ virsh define wide.xml    # its <cpu>:\n" + cpu_of(os.path.join(work, "wide.xml")))
    sb("virsh start wide", expect_fail=True)
    sb("virsh domstate wide")

    step("A domain pinned to the cluster's set: svemigctl libvirt pin rewrites its <cpu>")
    console = a.define(work, "vm1", kernel, initrd)
    say("hosta$ virsh define vm1.xml    # no <cpu>")
    sa("svemigctl libvirt pin vm1")
    sa("svemigctl libvirt pin --all --check",
       shown="svemigctl libvirt pin --all --check  # exits 4 if some domain is not pinned")
    sa("virsh dumpxml vm1 | sed -n '/<cpu/,/<\\/cpu>/p'")

    step("Started on hosta: QEMU gets sve512=off, and the guest sees 128 and 256 bits only")
    sa("virsh start vm1")
    rig.wait_console(console, r"vl-probe: (lengths|no SVE).*")
    args = re.search(r"-cpu (\S+)", a.qemu_cmdline("vm1"))
    say("QEMU's command line (hosta's /var/log/libvirt/qemu/vm1.log): -cpu %s" % (args.group(1) if args else "?"))
    say("the guest's console:")
    for line in rig.console_text(console).splitlines():
        if line.startswith(("vl-init: sve_default", "vl-probe:")):
            say("    " + line)
    sa("svemigctl libvirt list")

    step("Live-migrated to hostb while it runs; hostb's hook lets it in")
    rig.wait_console(console, r"vl-init: tick 1\b")
    before = rig.last_tick(console)
    sa("virsh migrate --live vm1 '%s'" % b.uri, shown="virsh migrate --live vm1 \"$hostb_uri\"    # %s" % b.uri)
    sb("virsh domstate vm1")
    sa("virsh domstate vm1")
    rig.wait_for("a tick after the migration", lambda: rig.last_tick(console) > before + 1)
    say("the guest counts on at hostb: tick %d before the migration, %d now" % (before, rig.last_tick(console)))
    b.svemigd.wait_for_log("libvirt: domain vm1 started (migrated)")
    say("hostb's svemigd followed it: " + last_line(b, "libvirt: domain vm1 started (migrated)"))

    step("An unpinned 512-bit domain on hosta: it could not move to hostb, and every host says so")
    a.define(work, "wide512", kernel, initrd, rig.sve_cpu([128, 256, 512]))
    say("hosta$ virsh define wide512.xml    # its <cpu> as wide's: requires sve512")
    sa("virsh start wide512")
    stuck = "hosta: libvirt domain wide512 (running) could not move to hostb"
    rig.wait_for("hostb's svemigd hearing of wide512", lambda: stuck in b.ctl("cluster").stdout)
    sb("svemigctl cluster | grep libvirt", shown="svemigctl cluster | grep libvirt    # hostb, of hosta's domains")
    sa("virsh migrate --live wide512 '%s'" % b.uri, shown="virsh migrate --live wide512 \"$hostb_uri\"",
       expect_fail=True)
    sa("virsh domstate wide512")


def last_line(host, text):
    lines = [line for line in host.svemigd.output().splitlines() if text in line]
    return lines[-1].strip() if lines else "?"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("demo: interrupted; everything it started is stopped")
