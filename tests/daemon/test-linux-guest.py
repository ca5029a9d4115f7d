#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Linux guests (issue 16) where there is no arm64 KVM: the sim backend runs
its synthetic workload only, and says so when asked to boot a kernel, from
svemigctl through svemigd and from svemig-vmm itself, leaving nothing behind.
Booting Linux for real is the arm64 rig's linux round (tests/arm64)."""

import gzip
import os
import struct
import subprocess
import sys
import unittest

import svemigtest as t
from svemigtest import DaemonTestCase

SIM = """\
    [sim]
    vq-map = 128-512
    """

VMM = os.path.join(os.path.dirname(t.SVEMIGD), "svemig-vmm")


def image():
    """The 64-byte header of an arm64 Image (text_offset 0, 4 MiB, the magic at 56) and a body."""
    hdr = struct.pack("<IIQQQQQQII", 0, 0, 0, 4 << 20, 0xa, 0, 0, 0, 0x644D5241, 0)
    return hdr + bytes(range(256)) * 16


class LinuxGuestOnSim(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.daemon, self.sock = self.start_daemon(SIM)
        self.kernel = os.path.join(self.dir, "vmlinuz")
        with open(self.kernel, "wb") as f:
            f.write(gzip.compress(image()))
        self.initrd = os.path.join(self.dir, "initrd.gz")
        with open(self.initrd, "wb") as f:
            f.write(gzip.compress(b"070701" + b"0" * 100))

    def ctl(self, *args):
        return t.ctl("--socket", self.sock, *args)

    def test_sim_refuses_a_kernel_with_the_reason(self):
        r = self.ctl("guest", "create", "lx", "--kernel", self.kernel, "--initrd", self.initrd,
                     "--cmdline", "console=ttyAMA0 rdinit=/init", "--vcpus", "2", "--memory", "256M",
                     "--vl", "128,256")
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("sim backend", r.stderr)
        self.assertIn("synthetic workload", r.stderr)
        self.assertIn("needs the kvm backend", r.stderr)
        # Refused before anything was made: no record, no VMM.
        listing = self.ctl("--json", "guest", "list")
        self.assertEqual(listing.returncode, 0, listing.stderr)
        self.assertNotIn('"lx"', listing.stdout)
        self.assertEqual(list(t.vmm_pids(self.dir)), [])
        # The daemon still serves: a sim guest is created as before.
        r = self.ctl("guest", "create", "w", "--vcpus", "1", "--memory", "16M")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_options_that_go_with_a_kernel(self):
        r = self.ctl("guest", "create", "lx", "--initrd", self.initrd, "--vcpus", "1", "--memory", "64M")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--initrd and --cmdline go with --kernel", r.stderr)
        r = self.ctl("guest", "create", "lx", "--kernel", self.kernel, "--dirty-rate", "4", "--vcpus", "1",
                     "--memory", "64M")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("has no --payload or --dirty-rate", r.stderr)
        # A kernel the client cannot open is svemigctl's own error, before svemigd hears of it.
        r = self.ctl("guest", "create", "lx", "--kernel", os.path.join(self.dir, "missing"), "--vcpus", "1",
                     "--memory", "64M")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--kernel", r.stderr)
        self.assertIn("missing", r.stderr)

    def test_the_vmm_refuses_too(self):
        """svemig-vmm, started by hand on the sim, says the same and makes nothing."""
        gdir = os.path.join(self.dir, "vmm-guest")
        os.mkdir(gdir)
        conf, _ = t.write_config(gdir, SIM)  # the sim, also on an arm64 host
        r = subprocess.run([VMM, "--config", conf, "--name", "lx", "--dir", gdir, "--vcpus", "1", "--memory", str(64 << 20),
                            "--vls", "none", "--kernel", self.kernel], capture_output=True, text=True,
                           timeout=t.WAIT)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("needs the kvm backend", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(gdir, "vmm.sock")))
        self.assertFalse(os.path.exists(os.path.join(gdir, "console.log")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
