#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The cluster's CPU baseline (docs/cpu-baseline.md) through real svemigd
processes on loopback, each a simulated host answering ID register writes as
the arm64 rig measured Debian's kernels: a (6.1, VHE), b (6.12, VHE) and c
(6.12, nVHE), the same VQ map. A guest at the baseline moves 6.1 -> 6.12 and
back, VHE <-> nVHE, and by snapshot and restore both ways, and equals an
unbroken run; a guest with 6.12's own ID registers is refused by the 6.1
host, naming the register and field, and runs on."""

import importlib
import json
import os
import unittest

migrate = importlib.import_module("test-migrate")
cluster = importlib.import_module("test-cluster")
Host = cluster.Host
VQ = "128,256"


class CpuBaseline(migrate.MigrationCase):
    def setUp(self):
        cluster.ClusterTestCase.setUp(self)
        self.h = {"a": Host("a", VQ, kernel="6.1"), "b": Host("b", VQ, kernel="6.12"),
                  "c": Host("c", VQ, kvm_mode="nvhe", kernel="6.12")}
        self.start_all(self.h)
        for h in self.h.values():
            self.wait_states(h, a="up", b="up", c="up")

    def assert_equals_reference(self, host, name):
        """A new guest at the baseline on host, run without a break to the same step count, has the
        same registers (ID registers included) and memory."""
        g = self.json(host, "guest", "show", name)
        if g["state"] == "running":
            g = self.json(host, "guest", "pause", name)
        steps = g["vcpu_steps"][0]
        digest = self.json(host, "guest", "show", name, "--digest")["digest"]
        self.create(host, name + "-ref", "--vl", "cluster")
        self.json(host, "guest", "run", name + "-ref", "--steps", str(steps))
        self.assertEqual(self.json(host, "guest", "show", name + "-ref", "--digest")["digest"], digest,
                         "the moved guest diverged from an unbroken run")

    def test_cluster_shows_the_baseline(self):
        v = self.json("a", "cluster")
        cpu = v["cpu"]
        self.assertEqual(cpu["conflicts"], [], cpu)
        self.assertEqual(sorted(u["field"] for u in cpu["el2_only_not_compared"]),
                         ["ID_AA64MMFR1_EL1.HCX", "ID_AA64MMFR1_EL1.VH"], cpu)
        # 6.1's DebugVer (6), which 6.1 cannot write: a pins it; without a it would be 9.
        self.assertEqual(cpu["baseline"]["0x603000000013c028"], "0x0000000010305006", cpu)
        lim = [l for l in cpu["limits"] if l["field"] == "ID_AA64DFR0_EL1.DebugVer"]
        self.assertEqual(len(lim), 1, cpu)
        self.assertEqual((lim[0]["host"], lim[0]["value"], lim[0]["without"], lim[0]["pinned"]), (0, 6, 9, True))
        self.assertEqual([h["writes_id_regs"] for h in cpu["hosts"]], [False, True, True])
        out = self.ok("a", "cluster").stdout
        self.assertIn("limiting: host 0 (a) holds ID_AA64DFR0_EL1.DebugVer at 6 (9 without it; its kernel "
                      "cannot write the field)", out)
        self.assertIn("EL2-only, not compared: ID_AA64MMFR1_EL1.HCX", out)

    def test_baseline_guest_moves_61_to_612_and_back(self):
        g = self.create("a", "g", "--vl", "cluster", "--start")
        self.assertEqual(g["cpu"], "cluster", g)
        self.wait_steps("a", "g", 1000)
        self.migrate("a", "g", "b")
        arrived = self.wait_running("b", "g")["steps"]
        self.wait_steps("b", "g", arrived + 500)
        self.migrate("b", "g", "a")
        arrived = self.wait_running("a", "g")["steps"]
        self.wait_steps("a", "g", arrived + 500)
        self.assert_equals_reference("a", "g")

    def test_baseline_guest_made_on_612_moves_to_61(self):
        # Created on 6.12, whose kernel writes 6.1's DebugVer, CLIDR_EL1 and CCSIDRs before the first run.
        self.create("b", "h", "--vl", "cluster", "--start")
        self.wait_steps("b", "h", 1000)
        self.migrate("b", "h", "a")
        arrived = self.wait_running("a", "h")["steps"]
        self.wait_steps("a", "h", arrived + 500)
        self.assert_equals_reference("a", "h")

    def test_vhe_and_nvhe(self):
        self.create("b", "v", "--vl", "cluster", "--start")
        self.wait_steps("b", "v", 1000)
        self.migrate("b", "v", "c")
        arrived = self.wait_running("c", "v")["steps"]
        self.wait_steps("c", "v", arrived + 500)
        self.migrate("c", "v", "a")
        arrived = self.wait_running("a", "v")["steps"]
        self.wait_steps("a", "v", arrived + 500)
        self.assert_equals_reference("a", "v")

    def test_snapshot_and_restore_both_ways(self):
        for src, dst in (("a", "b"), ("b", "a")):
            name = "s" + src
            self.create(src, name, "--vl", "cluster")
            self.json(src, "guest", "run", name, "--steps", "1500")
            path = os.path.join(self.dir, name + ".svemig")
            self.ok(src, "snapshot", name, path)
            g = self.json(dst, "restore", path, "--name", name)
            self.assertEqual((g["state"], g["vcpu_steps"]), ("paused", [1500]), g)
            self.json(dst, "guest", "run", name, "--steps", "500")
            self.json(src, "guest", "run", name, "--steps", "500")
            if dst == "a":
                self.assert_equals_reference("a", name)
            else:
                # Both copies differ only in what their kernels list: compare each with a fresh
                # guest of its host instead.
                self.assert_equals_reference(dst, name)
                self.assert_equals_reference(src, name)

    def test_612_full_features_refused_by_61(self):
        g = self.create("b", "full", "--vl", "cluster", "--cpu", "host", "--start")
        self.assertEqual(g["cpu"], "host", g)
        self.wait_steps("b", "full", 100)
        for extra in (("--check",), ()):
            r = self.ctl_on("b", "migrate", "full", "a", *extra)
            self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
            self.assertIn("ID_AA64DFR0_EL1.DebugVer", r.stderr)
        self.wait_gone("a", "full")
        steps = self.wait_running("b", "full")["steps"]
        self.wait_steps("b", "full", steps + 100)
        # 6.12 takes it (a 6.12 host in nVHE mode: VH is EL2-only).
        self.migrate("b", "full", "c")
        self.wait_running("c", "full")


if __name__ == "__main__":
    unittest.main()
