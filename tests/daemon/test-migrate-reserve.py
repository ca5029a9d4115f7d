#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The incoming RAM reserve ([cluster] incoming-reserve): daemons that keep
RAM faulted in for the next guest to migrate in. A guest that fits arrives
in it and equals an unbroken run; a new reserve is made for the next one
(a guest moved there, back and there again uses one each time); a guest
larger than the reserve still migrates, on ordinary memory."""

import importlib
import time
import unittest

migrate = importlib.import_module("test-migrate")
cluster = importlib.import_module("test-cluster")
A, B = cluster.A, cluster.B

RESERVE_MIB = 32
READY = "the incoming RAM reserve is ready: %d MiB" % RESERVE_MIB


class ReserveMigration(migrate.MigrationCase):
    def setUp(self):
        cluster.ClusterTestCase.setUp(self)
        self.h = self.hosts(a=A, b=B)
        self.start_all(self.h)
        for h in self.h.values():
            self.wait_states(h, a="up", b="up")

    def write_conf(self, host, peers, listen=True, extra=""):
        path, d = super().write_conf(host, peers, listen, extra)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("[cluster]\n", "[cluster]\nincoming-reserve = %dM\n" % RESERVE_MIB, 1))
        return path, d

    def create(self, host, name, *extra):
        """As MigrationCase's, but "big" has more RAM than the reserve (its unbroken run too)."""
        return self.json(host, "guest", "create", name, "--vcpus", "1", "--memory",
                         "64M" if name == "big" else "16M", "--dirty-rate", "4", *extra)

    def wait_logged(self, host, text, times):
        """Until host's log holds text at least 'times' times (a bound on hangs, not a timing)."""
        deadline = time.monotonic() + migrate.BOUND
        while self.h[host].daemon.output().count(text) < times:
            if time.monotonic() > deadline:
                self.fail("%s never logged %r %d times; its log:\n%s" % (
                    host, text, times, self.h[host].daemon.output()))
            time.sleep(0.02)

    def used(self, host, name, mib):
        return self.h[host].daemon.output().count(
            "guest %s's %d MiB of RAM came into the incoming RAM reserve" % (name, mib))

    def test_guest_arrives_in_reserve_and_a_new_one_is_made(self):
        self.wait_logged("b", READY, 1)
        self.wait_logged("a", READY, 1)
        self.create("a", "g", "--vl", "cluster", "--start")
        self.wait_steps("a", "g", 1000)
        self.migrate("a", "g", "b")
        g = self.wait_running("b", "g")
        self.assertEqual(self.used("b", "g", 16), 1, self.h["b"].daemon.output())
        self.assertIn("guest g is offered the incoming RAM reserve", self.h["b"].daemon.output())
        # It runs on there, in the reserve's memory.
        self.wait_steps("b", "g", g["steps"] + 500)

        # b prepares a new reserve at once; back to a (a's reserve), and to b again (b's second).
        self.wait_logged("b", READY, 2)
        self.migrate("b", "g", "a")
        g = self.wait_running("a", "g")
        self.assertEqual(self.used("a", "g", 16), 1, self.h["a"].daemon.output())
        self.wait_steps("a", "g", g["steps"] + 500)
        self.migrate("a", "g", "b")
        g = self.wait_running("b", "g")
        self.assertEqual(self.used("b", "g", 16), 2, self.h["b"].daemon.output())
        self.wait_steps("b", "g", g["steps"] + 500)
        self.assert_equals_unbroken_run("b", "g", "a")

    def test_guest_larger_than_reserve_gets_ordinary_memory(self):
        self.wait_logged("b", READY, 1)
        self.create("a", "big", "--vl", "cluster", "--start")
        self.wait_steps("a", "big", 500)
        self.migrate("a", "big", "b")
        g = self.wait_running("b", "big")
        self.assertIn("guest big's 64 MiB of RAM is larger than the incoming RAM reserve (%d MiB): it came "
                      "into ordinary memory" % RESERVE_MIB, self.h["b"].daemon.output())
        self.assertEqual(self.used("b", "big", 64), 0)
        self.wait_steps("b", "big", g["steps"] + 500)
        self.assert_equals_unbroken_run("b", "big", "a")


if __name__ == "__main__":
    unittest.main(verbosity=2)
