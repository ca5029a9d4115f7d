#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The incoming RAM reserve ([cluster] incoming-reserve): daemons that keep
a standby VMM holding RAM faulted in for the next guest to migrate in. A
guest that fits arrives in it (the standby becomes its VMM) and equals an
unbroken run; a new standby is started for the next one (a guest moved
there, back and there again uses one each time); a guest larger than the
reserve still migrates, into ordinary memory; a standby killed before use
is replaced; a stopped svemigd leaves no standby behind."""

import importlib
import os
import re
import signal
import time
import unittest

migrate = importlib.import_module("test-migrate")
cluster = importlib.import_module("test-cluster")
A, B = cluster.A, cluster.B

RESERVE_MIB = 32
READY = "the incoming RAM reserve is ready: %d MiB" % RESERVE_MIB
STANDBY = re.compile(r"preparing an incoming RAM reserve of %d MiB: standby VMM pid (\d+)" % RESERVE_MIB)


def alive(pid):
    """Whether pid is a process (a zombie counts: nobody has reaped it)."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


class ReserveCase(migrate.MigrationCase):
    """Two daemons, a and b, each with an incoming RAM reserve of 'reserve'."""
    reserve = "%dM" % RESERVE_MIB

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
            f.write(text.replace("[cluster]\n", "[cluster]\nincoming-reserve = %s\n" % self.reserve, 1))
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

    def standbys(self, host):
        """The pids of the standby VMMs host has started, oldest first."""
        return [int(p) for p in STANDBY.findall(self.h[host].daemon.output())]

    def wait_not_alive(self, pid):
        deadline = time.monotonic() + migrate.BOUND
        while alive(pid):
            if time.monotonic() > deadline:
                self.fail("process %d is still there" % pid)
            time.sleep(0.02)

    def used(self, host, name, mib):
        return self.h[host].daemon.output().count(
            "guest %s's %d MiB of RAM came into the incoming RAM reserve" % (name, mib))


class ReserveMigration(ReserveCase):
    def test_guest_arrives_in_reserve_and_a_new_one_is_made(self):
        self.wait_logged("b", READY, 1)
        self.wait_logged("a", READY, 1)
        self.create("a", "g", "--vl", "cluster", "--start")
        self.wait_steps("a", "g", 1000)
        [standby] = self.standbys("b")
        self.migrate("a", "g", "b")
        g = self.wait_running("b", "g")
        self.assertEqual(self.used("b", "g", 16), 1, self.h["b"].daemon.output())
        self.assertIn("guest g is offered the incoming RAM reserve (%d MiB): standby VMM pid %d receives it"
                      % (RESERVE_MIB, standby), self.h["b"].daemon.output())
        # The standby started ahead is the guest's VMM now.
        self.assertEqual(g["vmm_pid"], standby)
        # It runs on there, in the reserve's memory.
        self.wait_steps("b", "g", g["steps"] + 500)

        # b starts a new standby once the guest has arrived; back to a (a's), and to b again (b's second).
        self.wait_logged("b", READY, 2)
        second = self.standbys("b")[1]
        self.assertNotEqual(second, standby)
        self.assertTrue(alive(second))
        self.migrate("b", "g", "a")
        g = self.wait_running("a", "g")
        self.assertEqual(self.used("a", "g", 16), 1, self.h["a"].daemon.output())
        self.wait_steps("a", "g", g["steps"] + 500)
        self.migrate("a", "g", "b")
        g = self.wait_running("b", "g")
        self.assertEqual(self.used("b", "g", 16), 2, self.h["b"].daemon.output())
        self.assertEqual(g["vmm_pid"], second)
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
        # The standby received it all the same, into fresh memory, and gave its reserve back.
        self.assertEqual(g["vmm_pid"], self.standbys("b")[0])
        self.wait_steps("b", "big", g["steps"] + 500)
        self.assert_equals_unbroken_run("b", "big", "a")

    def test_standby_killed_before_use_is_replaced(self):
        self.wait_logged("b", READY, 1)
        [first] = self.standbys("b")
        os.kill(first, signal.SIGKILL)
        self.wait_logged("b", "the incoming RAM reserve's standby VMM (pid %d) was killed by signal 9 "
                              "(Killed) before a guest came; starting another" % first, 1)
        self.wait_logged("b", READY, 2)
        self.assertFalse(alive(first), "svemigd did not reap the standby it lost")
        second = self.standbys("b")[1]
        # The replacement takes the next guest.
        self.create("a", "g", "--vl", "cluster", "--start")
        self.wait_steps("a", "g", 500)
        self.migrate("a", "g", "b")
        g = self.wait_running("b", "g")
        self.assertEqual(g["vmm_pid"], second)
        self.assertEqual(self.used("b", "g", 16), 1, self.h["b"].daemon.output())

    def test_ready_standby_killed_twice_is_replaced_twice(self):
        self.wait_logged("b", READY, 1)
        os.kill(self.standbys("b")[0], signal.SIGKILL)
        self.wait_logged("b", READY, 2)
        second = self.standbys("b")[1]
        self.wait_logged("b", "standby VMM (pid %d) was killed" % self.standbys("b")[0], 1)
        # A ready replacement killed again is replaced again: it had proved it could be made.
        os.kill(second, signal.SIGKILL)
        self.wait_logged("b", READY, 3)
        self.assertEqual(len(self.standbys("b")), 3)

    def test_stopped_daemon_leaves_no_standby(self):
        self.wait_logged("b", READY, 1)
        self.wait_logged("a", READY, 1)
        pids = self.standbys("a") + self.standbys("b")
        self.assertEqual(len(pids), 2)
        for p in pids:
            self.assertTrue(alive(p))
        self.assertEqual(self.h["b"].daemon.stop(), 0)
        self.assertEqual(self.h["a"].daemon.stop(), 0)
        for p in pids:
            self.wait_not_alive(p)


class UnpreparableReserve(ReserveCase):
    """A reserve larger than any address space: every standby fails to map it, and says why."""
    reserve = "1048576G"
    MIB = 1 << 30  # in MiB: 1 PiB
    FAILED = ("the incoming RAM reserve (%d MiB) could not be prepared: its standby VMM (pid %%d) exited with "
              "status 1 before it was ready: cannot map the incoming RAM reserve (%d MiB)" % (MIB, MIB))

    def standbys(self, host):
        return [int(p) for p in re.findall(r"preparing an incoming RAM reserve of %d MiB: standby VMM pid (\d+)"
                                           % self.MIB, self.h[host].daemon.output())]

    def test_failing_standby_is_retried_once_then_on_the_next_arrival(self):
        first_failure = "the incoming RAM reserve's standby VMM (pid %d) exited with status 1 before it was " \
                        "ready: cannot map the incoming RAM reserve (%d MiB)"
        gave_up = "the incoming RAM reserve (%d MiB) could not be prepared" % self.MIB
        self.wait_logged("b", gave_up, 1)
        first, second = self.standbys("b")[:2]
        out = self.h["b"].daemon.output()
        self.assertIn(first_failure % (first, self.MIB), out)
        self.assertIn(self.FAILED % second, out)
        # Not a loop: nothing more is tried until a guest has arrived, which gets ordinary memory.
        self.create("a", "g", "--vl", "cluster", "--start")
        self.wait_steps("a", "g", 500)
        self.assertEqual(self.standbys("b"), [first, second])
        self.migrate("a", "g", "b")
        g = self.wait_running("b", "g")
        self.assertIn("guest g gets a new VMM and ordinary memory", self.h["b"].daemon.output())
        self.assertNotIn(g["vmm_pid"], self.standbys("b"))
        # Its arrival is the next try, which fails once and waits again.
        self.wait_logged("b", gave_up, 2)
        self.assertEqual(len(self.standbys("b")), 3)
        self.assertIn(self.FAILED % self.standbys("b")[2], self.h["b"].daemon.output())
        self.assertNotIn(READY, self.h["b"].daemon.output())
        self.wait_steps("b", "g", g["steps"] + 500)


if __name__ == "__main__":
    unittest.main(verbosity=2)
