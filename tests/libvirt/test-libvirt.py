#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""svemig with real libvirt (libvirtrig.py): two simulated hosts, hosta
offering SVE 128,256,512 and hostb 128,256, each a svemigd (sim backend,
peers of each other: the cluster's set is 128,256) beside its own isolated
libvirtd with svemig's hook installed. Guests are real aarch64 TCG domains
(256 MiB, 1 vcpu) whose initramfs prints the SVE lengths the guest sees.

Every wait is for a state libvirt, svemigd or the guest reports; the bounds
only end a hang."""

import base64
import json
import os
import tempfile
import unittest

import etcdtest
import libvirtrig as rig

SRC = os.environ.get("SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
CLUSTER = rig.CLUSTER


class LibvirtTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="svemig-libvirt-")
        cls.work = cls.tmp.name
        os.chmod(cls.work, 0o755)
        cls.kernel, cls.initrd = rig.guest_parts(SRC, cls.work)
        cls.hosts = []
        try:
            cls.a, cls.b = rig.start_two_hosts(cls.work, cls.hosts)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for h in cls.hosts:
            h.stop()
        rig.kill_qemus_under(cls.work)
        cls.tmp.cleanup()

    def define(self, host, name, cpu=""):
        return host.define(self.work, name, self.kernel, self.initrd, cpu)

    console_text = staticmethod(rig.console_text)
    wait_console = staticmethod(rig.wait_console)
    last_tick = staticmethod(rig.last_tick)

    def view(self, host):
        """svemigd's view of its libvirt (svemigctl libvirt list --json): name -> domain."""
        r = host.ctl("--json", "libvirt", "list")
        if r.returncode != 0:
            return {}
        doc = json.loads(r.stdout)
        return {d["name"]: d for d in doc["domains"]} if doc["connected"] else {}

    def wait_view(self, host, name, what, predicate):
        return rig.wait_for("%s's svemigd seeing %s %s" % (host.name, name, what),
                            lambda: predicate(self.view(host).get(name)),
                            on_fail=lambda: host.ctl("libvirt", "list").stdout)

    def destroy(self, host, name):
        host.virsh("destroy", name, check=False)
        host.virsh("undefine", name, check=False)

    def test_1_refused_at_start(self):
        """A 512-bit domain on the {128,256} host: the hook refuses it, virsh shows why."""
        self.define(self.b, "wide", rig.sve_cpu([128, 256, 512]))
        self.addCleanup(self.destroy, self.b, "wide")
        r = self.b.virsh("start", "wide", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("hostb lacks vq 4 (512-bit)", r.stderr)
        self.assertIn("svemigctl libvirt pin wide", r.stderr)
        self.assertEqual(self.b.domstate("wide"), "shut off")
        self.b.svemigd.wait_for_log("domain=wide")

    def test_2_pin_boot_migrate(self):
        """Pinned to the cluster's set: boots with sve512=off, sees 128 and 256, migrates to hostb."""
        console = self.define(self.a, "pinned")
        self.addCleanup(self.destroy, self.a, "pinned")
        self.addCleanup(self.destroy, self.b, "pinned")
        r = self.a.ctl("libvirt", "pin", "pinned", "--uri", self.a.uri)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("-> 128,256", r.stdout)
        # libvirt 9.0 defined it with its aarch64 TCG default, cortex-a15, which has no SVE.
        self.assertIn("CPU model cortex-a15 -> max", r.stdout)
        self.assertIn("takes effect when it next starts", r.stdout)
        r = self.a.ctl("libvirt", "pin", "pinned", "--uri", self.a.uri, "--check")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("already pinned", r.stdout)

        self.a.virsh("start", "pinned")
        self.wait_view(self.a, "pinned", "running, pinned, 128,256",
                       lambda d: d and d["state"] == "running" and d["pinned"] and d["vl_bits"] == CLUSTER)
        self.a.svemigd.wait_for_log("libvirt: domain pinned started")
        cmdline = self.a.qemu_cmdline("pinned")
        self.assertIn("sve512=off", cmdline)
        self.assertIn("sve256=on", cmdline)
        self.wait_console(console, r"vl-probe: (lengths|no SVE).*")
        self.assertIn("vl-probe: lengths 128,256\n", self.console_text(console))
        self.wait_console(console, r"vl-init: tick 1\b")

        before = self.last_tick(console)
        self.a.virsh("migrate", "--live", "pinned", self.b.uri)
        self.assertEqual(self.b.domstate("pinned"), "running")
        self.assertNotEqual(self.a.domstate("pinned"), "running")
        # It runs on at hostb: the guest goes on counting.
        rig.wait_for("a tick after the migration", lambda: self.last_tick(console) > before + 1,
                     on_fail=lambda: self.console_text(console)[-500:])
        self.b.svemigd.wait_for_log("libvirt migrate begin: allowed")
        # Both svemigd follow the move through libvirt's lifecycle events.
        self.b.svemigd.wait_for_log("libvirt: domain pinned started (migrated)")
        self.a.svemigd.wait_for_log("libvirt: domain pinned stopped (migrated)")
        self.wait_view(self.b, "pinned", "running", lambda d: d and d["state"] == "running")
        self.wait_view(self.a, "pinned", "shut off", lambda d: d and d["state"] == "shut off")
        self.b.virsh("destroy", "pinned")
        self.b.svemigd.wait_for_log("libvirt: domain pinned stopped")
        self.wait_view(self.b, "pinned", "gone (it was transient there)", lambda d: d is None)

    def test_3_unpinned_migration_refused(self):
        """An unpinned 512-bit domain: hostb's hook refuses the incoming migration; it runs on at hosta."""
        console = self.define(self.a, "wide512", rig.sve_cpu([128, 256, 512]))
        self.addCleanup(self.destroy, self.a, "wide512")
        self.a.virsh("start", "wide512")
        self.wait_console(console, r"vl-init: tick 1\b")
        # hosta's svemigd says where it could not go, and why.
        stuck = "hosta: libvirt domain wide512 (running) could not move to hostb: hostb lacks vq 4 (512-bit)"
        rig.wait_for("svemigctl cluster naming wide512", lambda: stuck in self.a.ctl("cluster").stdout,
                     on_fail=lambda: self.a.ctl("cluster").stdout)
        # hostb hears it from hosta (hosta's HostInfo over the peer protocol) and shows it under hosta.
        rig.wait_for("hostb's svemigctl cluster naming hosta's wide512", lambda: stuck in self.b.ctl("cluster").stdout,
                     on_fail=lambda: self.b.ctl("cluster").stdout)
        hosts = {h["name"]: h for h in json.loads(self.b.ctl("--json", "cluster").stdout)["hosts"]}
        self.assertEqual(hosts["hosta"]["libvirt_stuck"], [{
            "name": "wide512", "state": "running", "vl_bits": [128, 256, 512],
            "could_not_move_to": ["hostb"], "why": ["hostb lacks vq 4 (512-bit)"]}])
        self.assertEqual(hosts["hosta"]["libvirt_stuck_total"], 1)
        self.assertEqual(hosts["hostb"]["libvirt_stuck"], [])
        r = self.a.virsh("migrate", "--live", "wide512", self.b.uri, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("hostb lacks vq 4 (512-bit)", r.stderr)
        self.assertEqual(self.a.domstate("wide512"), "running")
        self.assertIsNone(self.b.domstate("wide512"))
        before = self.last_tick(console)
        rig.wait_for("a tick after the refusal", lambda: self.last_tick(console) > before)
        # Stopped, it could still not start there: hostb hears the new state; undefined, it is gone.
        self.a.virsh("destroy", "wide512")
        off = "hosta: libvirt domain wide512 (shut off) could not move to hostb"
        rig.wait_for("hostb's svemigctl cluster with wide512 shut off", lambda: off in self.b.ctl("cluster").stdout,
                     on_fail=lambda: self.b.ctl("cluster").stdout)
        self.a.virsh("undefine", "wide512")
        rig.wait_for("hostb's svemigctl cluster without wide512", lambda: "wide512" not in self.b.ctl("cluster").stdout,
                     on_fail=lambda: self.b.ctl("cluster").stdout)

    def test_4_daemon_down(self):
        """svemigd down during the hook: daemon-down = refuse refuses with its message, allow lets it start."""
        self.define(self.b, "small", rig.sve_cpu([128]))
        self.addCleanup(self.destroy, self.b, "small")
        self.b.stop_svemigd()
        try:
            r = self.b.virsh("start", "small", check=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("cannot ask svemigd about domain small", r.stderr)
            self.assertIn("daemon-down = refuse", r.stderr)
            self.assertEqual(self.b.domstate("small"), "shut off")

            self.b._write_svemigd_conf("daemon-down = allow\n")
            r = self.b.virsh("start", "small", check=False)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(self.b.domstate("small"), "running")
        finally:
            self.b.start_svemigd()

    def test_5_reconnects(self):
        """libvirtd restarts: svemigd notices, reconnects and lists the domains again."""
        self.define(self.b, "kept")
        self.addCleanup(self.destroy, self.b, "kept")
        self.wait_view(self.b, "kept", "defined", lambda d: d and d["state"] == "shut off")
        self.b.stop_libvirtd()
        rig.wait_for("hostb's svemigd losing libvirt",
                     lambda: not json.loads(self.b.ctl("--json", "libvirt", "list").stdout)["connected"])
        self.b.start_libvirtd()
        self.wait_view(self.b, "kept", "listed again", lambda d: d and d["state"] == "shut off")


class LibvirtEtcdTest(unittest.TestCase):
    """The same two hosts over etcd (store = etcd, a real etcd on loopback): hostb hears of
    hosta's stuck domain through hosta's record in etcd."""

    PREFIX = "/svemig-libvirt/"

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="svemig-libvirt-etcd-")
        cls.work = cls.tmp.name
        os.chmod(cls.work, 0o755)
        cls.kernel, cls.initrd = rig.guest_parts(SRC, cls.work)
        cls.hosts = []
        cls.etcd = None
        try:
            cls.etcd = etcdtest.Etcd(cls.work)
            conf = ("[cluster]\nlisten = 127.0.0.1:{port}\nstore = etcd\netcd-endpoints = %s\n"
                    "etcd-prefix = %s\netcd-lease = 2s\n" % (cls.etcd.endpoints, cls.PREFIX))
            cls.a, cls.b = rig.start_two_hosts(cls.work, cls.hosts,
                                               cluster=lambda name, port, peer, peer_port: conf.format(port=port))
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for h in cls.hosts:
            h.stop()
        rig.kill_qemus_under(cls.work)
        if cls.etcd:
            cls.etcd.stop()
        cls.tmp.cleanup()

    def record(self, host):
        kv = self.etcd.get(self.PREFIX + "hosts/" + host)
        return json.loads(base64.b64decode(kv["value"])) if kv else {}

    def test_stuck_domain_through_etcd(self):
        self.a.define(self.work, "wide512", self.kernel, self.initrd, rig.sve_cpu([128, 256, 512]))
        self.addCleanup(self.a.virsh, "undefine", "wide512", check=False)
        self.addCleanup(self.a.virsh, "destroy", "wide512", check=False)
        self.a.virsh("start", "wide512")
        stuck = "hosta: libvirt domain wide512 (running) could not move to hostb: hostb lacks vq 4 (512-bit)"
        rig.wait_for("hostb's svemigctl cluster naming hosta's wide512", lambda: stuck in self.b.ctl("cluster").stdout,
                     on_fail=lambda: self.b.ctl("cluster").stdout)
        rec = self.record("hosta")
        self.assertEqual(rec.get("stuck"), [{"guest": "wide512", "state": "running", "vl_bits": [128, 256, 512],
                                             "host": "hostb", "why": "hostb lacks vq 4 (512-bit)"}], rec)
        self.assertEqual(rec.get("stuck_total"), 1, rec)
        # Undefined, it is stuck nowhere: hosta's record says so, and hostb shows it.
        self.a.virsh("destroy", "wide512")
        self.a.virsh("undefine", "wide512")
        rig.wait_for("hostb's svemigctl cluster without wide512", lambda: "wide512" not in self.b.ctl("cluster").stdout,
                     on_fail=lambda: self.b.ctl("cluster").stdout)
        self.assertNotIn("stuck", self.record("hosta"))


if __name__ == "__main__":
    why = rig.missing()
    if why:
        print("skipped: " + why)
        raise SystemExit(1 if os.environ.get("CI") == "true" else 77)
    unittest.main(verbosity=2)
