#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""systemd-analyze verify on every unit svemig installs, as built.

The units name their installed binaries; verify insists that ExecStart=
exists, so each is checked from a temporary copy whose binaries are the
ones just built."""

import os
import re
import shutil
import subprocess
import sys
import unittest

from svemigtest import DaemonTestCase, SVEMIGCTL, SVEMIGD, WAIT

UNITS_DIR = os.environ.get("UNITS_DIR", "")
UNITS = ["svemigd.service", "svemigd.socket", "svemig-checkpoint@.service", "svemig-checkpoint@.timer"]


class Units(DaemonTestCase):
    def setUp(self):
        super().setUp()
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze is not installed")
        for u in UNITS:
            with open(os.path.join(UNITS_DIR, u)) as f:
                text = f.read()
            # /usr/local/sbin/svemigd -> the built one, etc.
            text = re.sub(r"(?m)^(Exec\w+=)\S*/svemigd\b", r"\1" + os.path.abspath(SVEMIGD), text)
            text = re.sub(r"(?m)^(Exec\w+=)\S*/svemigctl\b", r"\1" + os.path.abspath(SVEMIGCTL), text)
            with open(os.path.join(self.dir, u), "w") as f:
                f.write(text)

    def verify(self, unit):
        # Run from the copies' directory so that the units find each other.
        return subprocess.run(["systemd-analyze", "verify", "./" + unit], cwd=self.dir,
                              capture_output=True, text=True, timeout=WAIT)

    def test_each_unit_verifies_cleanly(self):
        for u in UNITS + ["svemig-checkpoint@vm1.service", "svemig-checkpoint@vm1.timer"]:
            with self.subTest(unit=u):
                r = self.verify(u)
                self.assertEqual(r.returncode, 0, r.stderr)
                # verify warns about unknown keys and the like without failing: none allowed.
                self.assertEqual(r.stderr.strip(), "", r.stderr)

    def test_units_point_at_the_installed_programs(self):
        with open(os.path.join(UNITS_DIR, "svemigd.service")) as f:
            service = f.read()
        self.assertRegex(service, r"(?m)^Type=notify$")
        self.assertRegex(service, r"(?m)^WatchdogSec=\d+")
        self.assertRegex(service, r"(?m)^ExecStart=/\S+/svemigd --config /\S+/svemig/migrate.conf$")
        self.assertRegex(service, r"(?m)^DeviceAllow=/dev/kvm rw$")
        # Guests run in their own VMM processes, which a stop of svemigd must leave running.
        self.assertRegex(service, r"(?m)^KillMode=process$")
        with open(os.path.join(UNITS_DIR, "svemig-checkpoint@.service")) as f:
            self.assertRegex(f.read(), r"(?m)^ExecStart=/\S+/svemigctl .*snapshot .*%I$")

    def test_verify_catches_a_broken_unit(self):
        # The check above can fail: a key systemd does not know is reported.
        with open(os.path.join(self.dir, "svemigd.service"), "a") as f:
            f.write("NoSuchKey=yes\n")
        r = self.verify("svemigd.service")
        self.assertIn("NoSuchKey", r.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
