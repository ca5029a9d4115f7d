#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Live migration between real svemigd processes on loopback, each with its
own simulated host (the issue's {128,256,512}, {128,256}, {128,256,384,512}),
driven through `svemigctl migrate`: a running guest moves and ends in the
state of an unbroken run; an incompatible guest is refused with the vq
reason (exit 4) and runs on; a chain A->B->C->A; a destination that dies
mid-migration, or cannot be reached, leaves the guest running on the
source."""

import importlib
import json
import os
import signal
import subprocess
import time
import unittest

import svemigtest as t
from svemigtest import SVEMIGCTL, ctl, vmm_pids

cluster = importlib.import_module("test-cluster")
A, B, C = cluster.A, cluster.B, cluster.C

# A bound on hangs only: nothing below asserts a duration.
BOUND = 60 * cluster.TIMEOUT_SCALE


class MigrationCase(cluster.ClusterTestCase):
    """Three daemons, peers of each other, all up."""

    def setUp(self):
        super().setUp()
        self.h = self.hosts(a=A, b=B, c=C)
        self.start_all(self.h)
        for h in self.h.values():
            self.wait_states(h, a="up", b="up", c="up")

    def ctl_on(self, host, *args, timeout=t.WAIT):
        return ctl("--socket", self.h[host].sock, *args, timeout=timeout)

    def ok(self, host, *args, timeout=t.WAIT):
        r = self.ctl_on(host, *args, timeout=timeout)
        self.assertEqual(r.returncode, 0, "svemigctl %s on %s: %s%s\nits log:\n%s" % (
            " ".join(args), host, r.stdout, r.stderr, self.h[host].daemon.output()))
        return r

    def json(self, host, *args, timeout=t.WAIT):
        return json.loads(self.ok(host, "--json", *args, timeout=timeout).stdout)

    def names(self, host):
        return [g["name"] for g in self.json(host, "guest", "list")["guests"]]

    def wait_running(self, host, name):
        """The destination registers a guest once its new VMM reports in, just after the handoff."""
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            r = self.ctl_on(host, "--json", "guest", "show", name)
            if r.returncode == 0 and json.loads(r.stdout)["state"] == "running":
                return json.loads(r.stdout)
            time.sleep(0.02)
        self.fail("guest %s never ran on %s; its log:\n%s" % (name, host, self.h[host].daemon.output()))

    def wait_gone(self, host, name):
        """An incoming guest that did not arrive is unregistered once its VMM has exited."""
        deadline = time.monotonic() + BOUND
        while name in self.names(host):
            if time.monotonic() > deadline:
                self.fail("%s still lists guest %s" % (host, name))
            time.sleep(0.02)

    def create(self, host, name, *extra):
        return self.json(host, "guest", "create", name, "--vcpus", "1", "--memory", "16M",
                         "--dirty-rate", "4", *extra)

    def wait_steps(self, host, name, at_least):
        self.wait_running(host, name)
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            g = self.json(host, "guest", "show", name)
            if g["steps"] >= at_least:
                return g
            time.sleep(0.02)
        self.fail("guest %s on %s never ran %d steps" % (name, host, at_least))

    def migrate(self, src, name, dst, *extra):
        rep = self.json(src, "migrate", name, dst, *extra)
        self.assertEqual((rep["guest"], rep["peer"], rep["check"]), (name, dst, False), rep)
        self.assertGreater(rep["bytes_sent"], 0, rep)
        self.assertGreaterEqual(rep["rounds"], 1, rep)
        self.assertNotIn(name, self.names(src))
        return rep

    def assert_equals_unbroken_run(self, host, name, ref_host):
        """Pauses the guest on host and compares it with a new guest of the same name on ref_host
        run without a break to the same step count."""
        g = self.json(host, "guest", "pause", name)
        steps = g["vcpu_steps"][0]
        shown = self.json(host, "guest", "show", name, "--digest")
        digest = shown["digest"]
        self.create(ref_host, name, "--vl", ",".join(map(str, shown["vl_bits"])))
        # As many steps as the guest ran in the whole test (millions under a sanitizer, on a
        # loaded machine): a bound on a hang, far beyond one call's.
        ref = self.json(ref_host, "guest", "run", name, "--steps", str(steps), timeout=10 * t.WAIT)
        self.assertEqual(ref["vcpu_steps"], [steps])
        self.assertEqual(self.json(ref_host, "guest", "show", name, "--digest")["digest"], digest,
                         "the migrated guest diverged from an unbroken run")


class Migration(MigrationCase):
    def test_running_guest_migrates_and_equals_unbroken_run(self):
        self.create("a", "g", "--vl", "cluster", "--start")
        self.wait_steps("a", "g", 2000)
        self.migrate("a", "g", "b")
        g = self.wait_running("b", "g")
        self.assertEqual(g["vl_bits"], [128, 256], g)
        # It runs on at the destination: its steps grow past where it arrived.
        arrived = g["steps"]
        self.wait_steps("b", "g", arrived + 500)
        self.assert_equals_unbroken_run("b", "g", "a")

    def test_operator_knobs(self):
        self.create("a", "k", "--vl", "cluster", "--start")
        self.wait_steps("a", "k", 500)
        # A capped link (paused, so that one pass of its 16 MiB does): the pump never sends faster,
        # and LZ4 as asked.
        self.json("a", "guest", "pause", "k")
        cap = 8 << 20
        rep = self.json("a", "migrate", "k", "b", "--max-bandwidth", "8M", "--compression", "lz4",
                        "--downtime", "50")
        self.assertEqual(rep["compression"], "lz4", rep)
        self.assertLessEqual(rep["link_bps"], cap * 1.25, rep)
        self.assertEqual(self.json("b", "guest", "resume", "k")["state"], "running")
        self.wait_running("b", "k")
        # Back, uncompressed as asked.
        rep = self.json("b", "migrate", "k", "a", "--compression", "none")
        self.assertEqual(rep["compression"], "none", rep)
        self.wait_steps("a", "k", self.wait_running("a", "k")["steps"] + 100)
        self.assert_equals_unbroken_run("a", "k", "c")

        for bad, what in ((["--compression", "zstd"], "--compression takes auto, none or lz4, not 'zstd'"),
                          (["--downtime", "0"], "--downtime takes milliseconds from 1 to 60000, not '0'"),
                          (["--max-bandwidth", "fast"], "--max-bandwidth takes bytes per second"),
                          (["--channels", "17"], "--channels takes a number from 0 (one connection) to 16")):
            r = self.ctl_on("a", "migrate", "k", "b", *bad)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(what, r.stderr)

    def test_memory_channels(self):
        # On one connection (--channels 0), then back with migrate.conf's default (4 memory channels).
        self.create("a", "m", "--vl", "cluster", "--start")
        self.wait_steps("a", "m", 500)
        self.migrate("a", "m", "b", "--channels", "0")
        self.assertNotIn("memory channel", self.h["b"].daemon.output())
        self.wait_steps("b", "m", self.wait_running("b", "m")["steps"] + 100)
        self.migrate("b", "m", "a")
        # a's svemigd took every channel on its peer port and handed each to the receiving VMM.
        for index in range(4):
            self.assertIn("memory channel %d of guest m's migration handed to its VMM" % index,
                          self.h["a"].daemon.output())
        self.wait_steps("a", "m", self.wait_running("a", "m")["steps"] + 100)
        self.assert_equals_unbroken_run("a", "m", "c")

    def test_incompatible_guest_is_refused_and_runs_on(self):
        self.create("a", "wide", "--vl", "128,256,512", "--start")
        for args in (("--check",), ()):
            r = self.ctl_on("a", "migrate", "wide", "b", *args)
            self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
            self.assertRegex(r.stderr, r"512", r.stderr)
            self.wait_gone("b", "wide")
            g = self.json("a", "guest", "show", "wide")
            self.assertEqual(g["state"], "running", g)
            self.wait_steps("a", "wide", g["steps"] + 100)
        # c offers 512 too, but also 384, which it cannot hide below it: refused as well, named.
        r = self.ctl_on("a", "migrate", "wide", "c", "--check")
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        self.assertIn("384", r.stderr)
        # A guest at the cluster set passes the check, and nothing moves.
        self.create("a", "narrow", "--vl", "cluster", "--start")
        rep = self.json("a", "migrate", "narrow", "b", "--check")
        self.assertEqual((rep["peer"], rep["check"]), ("b", True))
        self.assertEqual(self.json("a", "guest", "show", "narrow")["state"], "running")
        self.assertNotIn("narrow", self.names("b"))

    def test_chain_a_b_c_a(self):
        self.create("a", "g", "--vl", "cluster", "--start")
        self.wait_steps("a", "g", 1000)
        # The first hop as a person sees it: progress on stderr (plain lines: not a terminal), the report.
        before = self.json("a", "guest", "show", "g")["steps"]
        r = self.ok("a", "migrate", "g", "b")
        self.assertRegex(r.stderr, r"migrate: \S+ +pass \d+, .* sent, dirtying .*, expected downtime")
        self.assertRegex(r.stdout, r"guest g migrated to b\n  total time .* ms\n  downtime .* ms\n  bytes sent")
        self.wait_steps("b", "g", before + 200)
        for src, dst in (("b", "c"), ("c", "a")):
            before = self.json(src, "guest", "show", "g")["steps"]
            self.migrate(src, "g", dst)
            g = self.wait_steps(dst, "g", before + 200)
            self.assertEqual(g["state"], "running")
        self.assert_equals_unbroken_run("a", "g", "b")

    def test_name_taken_at_destination_is_refused(self):
        self.create("a", "twin", "--start")
        self.create("b", "twin")
        r = self.ctl_on("a", "migrate", "twin", "b")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("already has a guest named twin", r.stderr)
        self.assertEqual(self.json("a", "guest", "show", "twin")["state"], "running")

    def test_unreachable_destination_guest_runs_on(self):
        self.json("a", "guest", "create", "big", "--vcpus", "2", "--memory", "32M", "--dirty-rate",
                  "16", "--start")
        self.wait_steps("a", "big", 100)
        self.h["b"].daemon.proc.kill()
        self.h["b"].daemon.proc.wait()
        # b is down now (or soon seen so): either way the guest stays on a, running.
        r = self.ctl_on("a", "migrate", "big", "b")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("b", r.stderr)
        g = self.json("a", "guest", "show", "big")
        self.assertEqual(g["state"], "running", g)
        self.wait_steps("a", "big", g["steps"] + 100)


class SlowLink(MigrationCase):
    """Source VMMs send at most 4 MiB/s (SVEMIG_TEST_MIGRATE_MAX_BANDWIDTH, inherited from svemigd),
    so that a migration is still under way when its destination dies."""

    def setUp(self):
        os.environ["SVEMIG_TEST_MIGRATE_MAX_BANDWIDTH"] = str(4 << 20)
        try:
            super().setUp()
        finally:
            del os.environ["SVEMIG_TEST_MIGRATE_MAX_BANDWIDTH"]

    def test_destination_vmm_killed_mid_stream_guest_runs_on(self):
        # At the cluster set, which c can take: the stream must be flowing when c's VMM dies, not refused.
        self.json("a", "guest", "create", "big", "--vcpus", "2", "--memory", "64M", "--dirty-rate", "8",
                  "--vl", "cluster", "--start")
        self.wait_steps("a", "big", 100)
        proc = subprocess.Popen([SVEMIGCTL, "--socket", self.h["a"].sock, "migrate", "big",
                                 "c"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Kill c's receiving VMM as soon as it exists.
        deadline = time.monotonic() + BOUND
        killed = False
        while not killed and time.monotonic() < deadline and proc.poll() is None:
            for pid in vmm_pids(os.path.join(self.dir, "c"), receiving=True):
                os.kill(pid, signal.SIGKILL)
                killed = True
        out, err = proc.communicate(timeout=BOUND)
        self.assertTrue(killed, "the migration ended before its destination could be killed: " + out + err)
        self.assertEqual(proc.returncode, 1, out + err)
        g = self.json("a", "guest", "show", "big")
        self.assertEqual(g["state"], "running", g)
        self.wait_steps("a", "big", g["steps"] + 100)
        self.wait_gone("c", "big")


if __name__ == "__main__":
    unittest.main(verbosity=2)
