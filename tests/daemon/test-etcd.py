#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The cluster view from etcd ([cluster] store = etcd): real etcd members
(etcdtest.py) and real svemigd processes on loopback, each with its own
simulated host and no [peer] section. The daemons register under leases,
find each other in etcd and agree on the guest set; a fourth host joins and
leaves (stopped: its lease revoked; killed: its lease expired); a guest
migrates to an address found in etcd; a host restarted under the same name
stays up after its old lease expires. Faults: etcd gone, its leader killed,
two of three members killed. The view is then marked stale with the reason,
or stays current; every wait is for an event seen through `svemigctl
cluster`, never for time."""

import importlib
import json
import os
import signal
import subprocess
import time
import unittest

import etcdtest
from svemigtest import Daemon, ctl, wait_for_socket

cluster = importlib.import_module("test-cluster")
A, B, C = cluster.A, cluster.B, cluster.C
D = "128"

# Bounds on hangs only; nothing asserts a duration.
BOUND = 90
LEASE = "2s"


class EtcdCase(cluster.ClusterTestCase):
    MEMBERS = 1

    def setUp(self):
        super().setUp()
        self.etcd = etcdtest.Etcd(self.dir, self.MEMBERS)
        self.prefix = "/svemig-test/"

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            self.etcd.stop()

    def etcd_conf(self, endpoints=None):
        return ("store = etcd\netcd-endpoints = %s\netcd-prefix = %s\netcd-lease = %s\n" %
                (endpoints or self.etcd.endpoints, self.prefix, LEASE))

    def start_etcd_host(self, host):
        return self.start(host, [], extra=self.etcd_conf())

    def wait_view(self, host, what, predicate):
        deadline = time.monotonic() + BOUND
        v = None
        while time.monotonic() < deadline:
            v = self.view(host)
            if predicate(v):
                return v
            time.sleep(0.05)
        self.fail("%s never saw %s; its last view:\n%s\nits log:\n%s" % (
            host.name, what, json.dumps(v, indent=1), host.daemon.output()))

    @staticmethod
    def names(v):
        return sorted(h["name"] for h in v["hosts"])

    def wait_agree(self, hosts, up, guest_bits, stale=False):
        """Every host in hosts sees exactly 'up' up, the guest set guest_bits, and the view (not) stale."""
        def ok(v):
            return (sorted(h["name"] for h in v["hosts"] if h["state"] == "up") == sorted(up) and
                    v["guest_bits"] == guest_bits and v["stale"] == stale)
        return [self.wait_view(h, "%s up, guest set %s, stale %s" % (up, guest_bits, stale), ok)
                for h in hosts]


class OneMember(EtcdCase):
    def test_three_hosts_register_and_agree(self):
        h = self.hosts(a=A, b=B, c=C)
        for x in h.values():
            self.start_etcd_host(x)
        views = self.wait_agree(h.values(), ["a", "b", "c"], [128, 256])
        for v in views:
            self.assertTrue(v["store"].startswith("etcd http://127.0.0.1:"), v["store"])
            self.assertEqual(sorted(v["limiting"]), ["a", "b"], v)
            self.assert_hosts_as_configured(v, h)
            for x in v["hosts"]:
                if not x["self"]:
                    # The address each host registered: its listen address.
                    self.assertEqual(x["address"], h[x["name"]].address, x)
        # Each record is under its host's lease.
        kv = self.etcd.get(self.prefix + "hosts/b")
        self.assertTrue(kv and int(kv["lease"]) != 0, kv)
        rec = json.loads(etcdtest.base64.b64decode(kv["value"]))
        self.assertEqual((rec["name"], rec["address"], rec["vl_bits"]), ("b", h["b"].address, [128, 256]))
        r = ctl("--socket", h["a"].sock, "cluster")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("from etcd", r.stdout)
        self.assertNotIn("STALE", r.stdout)

    def test_fourth_joins_and_leaves(self):
        h = self.hosts(a=A, b=B, c=C)
        for x in h.values():
            self.start_etcd_host(x)
        self.wait_agree(h.values(), ["a", "b", "c"], [128, 256])
        d = cluster.Host("d", D)
        self.start_etcd_host(d)
        self.wait_agree(list(h.values()) + [d], ["a", "b", "c", "d"], [128])
        # Stopped: it revokes its lease and is down at once, for a reason.
        self.assertEqual(d.daemon.stop(), 0)
        views = self.wait_agree(h.values(), ["a", "b", "c"], [128, 256])
        dv = next(x for x in views[0]["hosts"] if x["name"] == "d")
        self.assertIn("left etcd", dv["down_reason"])
        # Back, then killed: nobody revokes; its lease expires and it is down again.
        d.daemon = Daemon(os.path.dirname(d.sock), os.path.join(os.path.dirname(d.sock), "migrate.conf"))
        self.daemons.append(d.daemon)
        wait_for_socket(d.sock, d.daemon)
        self.wait_agree(h.values(), ["a", "b", "c", "d"], [128])
        d.daemon.signal(signal.SIGKILL)
        d.daemon.wait()
        self.wait_agree(h.values(), ["a", "b", "c"], [128, 256])

    def test_guest_migrates_to_the_address_in_etcd(self):
        h = self.hosts(a=A, b=B)
        for x in h.values():
            self.start_etcd_host(x)
        self.wait_agree(h.values(), ["a", "b"], [128, 256])

        def j(host, *args):
            r = ctl("--socket", h[host].sock, "--json", *args)
            self.assertEqual(r.returncode, 0, "%s%s\n%s" % (r.stdout, r.stderr, h[host].daemon.output()))
            return json.loads(r.stdout)

        g = j("a", "guest", "create", "g", "--vcpus", "1", "--memory", "16M", "--vl", "cluster", "--start")
        self.assertEqual(g["vl_bits"], [128, 256])
        rep = j("a", "migrate", "g", "b")
        self.assertEqual((rep["guest"], rep["peer"]), ("g", "b"), rep)
        deadline = time.monotonic() + BOUND
        while True:
            r = ctl("--socket", h["b"].sock, "--json", "guest", "show", "g")
            if r.returncode == 0 and json.loads(r.stdout)["state"] == "running":
                break
            self.assertLess(time.monotonic(), deadline, "g never ran on b:\n" + h["b"].daemon.output())
            time.sleep(0.05)
        self.assertNotIn("g", [x["name"] for x in j("a", "guest", "list")["guests"]])
        # An unknown peer's reason says where the hosts come from.
        r = ctl("--socket", h["a"].sock, "migrate", "g", "nosuch")
        self.assertNotEqual(r.returncode, 0)

    def test_host_restarted_with_the_same_name(self):
        h = self.hosts(a=A, b=B)
        for x in h.values():
            self.start_etcd_host(x)
        self.wait_agree(h.values(), ["a", "b"], [128, 256])
        old_lease = self.etcd.get(self.prefix + "hosts/b")["lease"]
        b = h["b"]
        b.daemon.signal(signal.SIGKILL)
        b.daemon.wait()
        # The same name again, now a host with 512 bits too: it registers under a new lease.
        b.vq_map = A
        self.start_etcd_host(b)
        self.wait_agree([h["a"]], ["a", "b"], [128, 256, 512])
        deadline = time.monotonic() + BOUND
        while not self.etcd.lease_expired(old_lease):
            self.assertLess(time.monotonic(), deadline, "b's old lease never expired")
            time.sleep(0.05)
        # The old lease's expiry took nothing with it: the record is the new lease's.
        self.assertNotEqual(self.etcd.get(self.prefix + "hosts/b")["lease"], old_lease)
        v = self.view(h["a"])
        self.assertEqual(self.state(v, "b"), "up", v)
        self.assertEqual(v["guest_bits"], [128, 256, 512], v)

    def test_record_deleted_by_hand_is_put_again(self):
        h = self.hosts(a=A, b=B)
        for x in h.values():
            self.start_etcd_host(x)
        self.wait_agree(h.values(), ["a", "b"], [128, 256])
        lease = self.etcd.get(self.prefix + "hosts/b")["lease"]
        m = self.etcd.members[0]
        self.etcd.call(m, "/v3/kv/deleterange", {"key": etcdtest.b64(self.prefix + "hosts/b")})
        deadline = time.monotonic() + BOUND
        while self.etcd.get(self.prefix + "hosts/b") is None:
            self.assertLess(time.monotonic(), deadline, "b never put its record again:\n" + h["b"].daemon.output())
            time.sleep(0.05)
        self.assertEqual(self.etcd.get(self.prefix + "hosts/b")["lease"], lease)
        self.wait_agree(h.values(), ["a", "b"], [128, 256])

    def test_etcd_gone_the_view_is_stale_and_says_why(self):
        h = self.hosts(a=A, b=B)
        for x in h.values():
            self.start_etcd_host(x)
        self.wait_agree(h.values(), ["a", "b"], [128, 256])
        m = self.etcd.members[0]
        self.etcd.kill(m)
        # The hosts stay as last known; the view says it cannot vouch for them.
        v = self.wait_agree([h["a"]], ["a", "b"], [128, 256], stale=True)[0]
        self.assertIn("etcd", v["stale_reason"])
        self.assertGreater(v["stale_since_ns"], 0)
        r = ctl("--socket", h["a"].sock, "cluster")
        self.assertIn("STALE", r.stdout)
        # A guest still moves, on the destination's own facts, and the daemon says on what view.
        r = ctl("--socket", h["a"].sock, "--json", "guest", "create", "s", "--vcpus", "1", "--memory", "16M",
                "--vl", "cluster", "--start")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = ctl("--socket", h["a"].sock, "--json", "migrate", "s", "b")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        h["a"].daemon.wait_for_log("as the stale cluster view last knew it")
        # etcd back (same data): current again, both hosts still there.
        self.etcd.start(m)
        self.etcd.wait_healthy()
        self.wait_agree(h.values(), ["a", "b"], [128, 256], stale=False)

    def test_config_errors(self):
        x = cluster.Host("x", A)
        cases = [
            ("store = etcd\n", "etcd-endpoints"),
            ("store = etcd\netcd-endpoints = 127.0.0.1:2379\n", "http://HOST:PORT"),
            ("store = zookeeper\n", "expected static"),
            ("etcd-endpoints = http://127.0.0.1:2379\n", "store is static"),
            ("store = etcd\netcd-endpoints = http://127.0.0.1:2379\netcd-cert = /x.pem\n", "etcd-key"),
            ("store = etcd\netcd-endpoints = http://127.0.0.1:2379\netcd-lease = 1s\n", "etcd-lease"),
            ("cluster-set = rack\n", "store = etcd"),
            ("store = etcd\netcd-endpoints = http://127.0.0.1:2379\ncluster-set = a/b\n", "cluster-set"),
        ]
        for extra, want in cases:
            path, _ = self.write_conf(x, [], extra=extra)
            r = subprocess.run([cluster.t.SVEMIGD, "--config", path, "--check-config"], capture_output=True,
                               text=True)
            self.assertNotEqual(r.returncode, 0, extra)
            self.assertIn(want, r.stderr, extra)
        path, _ = self.write_conf(x, [], listen=False, extra="store = etcd\netcd-endpoints = http://h:1\n")
        r = subprocess.run([cluster.t.SVEMIGD, "--config", path, "--check-config"], capture_output=True, text=True)
        self.assertIn("listen", r.stderr)


    def put(self, key, value):
        m = next(m for m in self.etcd.members if m.alive())
        self.etcd.call(m, "/v3/kv/put", {"key": etcdtest.b64(key), "value": etcdtest.b64(json.dumps(value))})

    def test_stuck_domains_in_a_record_are_shown_bounded_and_escaped(self):
        """A host's record names the libvirt domains that could not move from it (as svemigd puts them
        when it follows libvirt): its peers show them for that host, at most 8, escaped, with the total."""
        h = self.hosts(a=A)
        self.start_etcd_host(h["a"])
        self.wait_agree([h["a"]], ["a"], [128, 256, 512])
        stuck = [{"guest": "wide\nsvemigd: forged" if i == 0 else "g%d" % (i // 2), "state": "running",
                  "vl_bits": [128, 256, 512], "host": "host%d" % (i % 2),
                  "why": "host%d lacks vq 4 (512-bit)" % (i % 2)} for i in range(10)]
        self.put(self.prefix + "hosts/e", {
            "name": "e", "address": "127.0.0.1:9", "instance": "by-hand", "svemig_version": "0.4",
            "protocol_version": 1, "backend": "sim", "kernel": "test", "sve": True, "vl_bits": [128, 256, 512],
            "max_vq": 4, "stuck": stuck, "stuck_total": 11})
        v = self.wait_view(h["a"], "e's stuck domains",
                           lambda v: any(x["name"] == "e" and x["libvirt_stuck"] for x in v["hosts"]))
        e = next(x for x in v["hosts"] if x["name"] == "e")
        # A host's entries, one per domain and host, come grouped by domain; a newer host's ninth is cut.
        self.assertEqual(e["libvirt_stuck_total"], 11, e)
        self.assertEqual([d["name"] for d in e["libvirt_stuck"]],
                         ["wide\\x0asvemigd: forged", "g0", "g1", "g2", "g3"], e)
        self.assertEqual(e["libvirt_stuck"][1]["could_not_move_to"], ["host1"], e)
        self.assertEqual(e["libvirt_stuck"][2]["could_not_move_to"], ["host0", "host1"], e)
        self.assertEqual(e["libvirt_stuck"][2]["why"], ["host0 lacks vq 4 (512-bit)", "host1 lacks vq 4 (512-bit)"])
        self.assertEqual(e["libvirt_stuck"][2]["vl_bits"], [128, 256, 512])
        a = next(x for x in v["hosts"] if x["name"] == "a")
        self.assertEqual((a["libvirt_stuck"], a["libvirt_stuck_total"]), ([], 0), a)
        out = ctl("--socket", h["a"].sock, "cluster").stdout
        self.assertIn("e: libvirt domain g2 (running) could not move to host1: host1 lacks vq 4 (512-bit)", out)
        self.assertIn("e: and 3 more libvirt domain(s) or host(s) it could not move to", out)
        self.assertNotIn("\nsvemigd: forged", out)

    def test_cluster_set_pins_the_guest_set_and_refuses_a_weaker_host(self):
        self.put(self.prefix + "sets/rack", {"vl_bits": [128, 256]})
        h = self.hosts(a=A, b=B, c=C)
        in_set = self.etcd_conf() + "cluster-set = rack\n"
        for x in h.values():
            self.start(x, [], extra=in_set)
        views = self.wait_agree(h.values(), ["a", "b", "c"], [128, 256])
        for v in views:
            self.assertEqual((v["cluster_set"], v["pinned"], v["refused"]), ("rack", True, None), v)
            self.assertEqual(v["limiting"], [], v)
        # A weaker host of the set is refused: it stays out of etcd and says why; the set holds.
        d = cluster.Host("d", D)
        self.start(d, [], extra=in_set)
        dv = self.wait_view(d, "its refusal", lambda v: v["refused"] is not None)
        self.assertIn("cannot present cluster set rack", dv["refused"])
        self.assertIn("256", dv["refused"])
        self.assertIsNone(self.etcd.get(self.prefix + "hosts/d"))
        r = ctl("--socket", d.sock, "guest", "create", "x", "--vcpus", "1", "--memory", "16M", "--vl", "cluster")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not in the cluster", r.stderr)
        self.assertNotIn("d", self.names(self.view(h["a"])))
        # A host outside any set still registers; the set's guests could not move to it, and it says so.
        x = cluster.Host("x", D)
        self.start_etcd_host(x)
        v = self.wait_view(h["a"], "x up", lambda v: "x" in self.names(v) and self.state(v, "x") == "up")
        self.assertEqual(v["guest_bits"], [128, 256], v)
        xv = next(y for y in v["hosts"] if y["name"] == "x")
        self.assertEqual((xv["counted"], xv["can_present"]), (True, False), xv)
        self.assertIn("256", xv["reason"])
        r = ctl("--socket", h["a"].sock, "cluster")
        self.assertIn("x: the guests cannot move there", r.stdout)
        # The set lowered to what d offers: d joins.
        self.put(self.prefix + "sets/rack", {"vl_bits": [128]})
        self.wait_agree([h["a"], d], ["a", "b", "c", "d", "x"], [128])

    def test_cluster_set_not_defined(self):
        f = cluster.Host("f", A)
        self.start(f, [], extra=self.etcd_conf() + "cluster-set = nosuch\n")
        v = self.wait_view(f, "its refusal", lambda v: v["refused"] is not None)
        self.assertIn("not defined in etcd", v["refused"])
        self.assertIn(self.prefix + "sets/nosuch", v["refused"])

    def test_etcd_user_and_password(self):
        def etcdctl(*args):
            r = subprocess.run(["etcdctl", "--endpoints", self.etcd.endpoints] + list(args), capture_output=True,
                               text=True, env=dict(os.environ, ETCDCTL_API="3"))
            self.assertEqual(r.returncode, 0, "etcdctl %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
        etcdctl("user", "add", "root:rootpw", "--interactive=false")
        etcdctl("user", "add", "svemig:s3cret", "--interactive=false")
        etcdctl("role", "add", "svemig")
        etcdctl("role", "grant-permission", "svemig", "--prefix=true", "readwrite", self.prefix)
        etcdctl("user", "grant-role", "svemig", "svemig")
        etcdctl("auth", "enable")
        good = os.path.join(self.dir, "password")
        bad = os.path.join(self.dir, "wrong")
        with open(good, "w") as f:
            f.write("s3cret\n")
        with open(bad, "w") as f:
            f.write("guess\n")
        h = self.hosts(a=A, b=B)
        for x in h.values():
            self.start(x, [], extra=self.etcd_conf() + "etcd-user = svemig\netcd-password-file = %s\n" % good)
        self.wait_agree(h.values(), ["a", "b"], [128, 256])
        c = cluster.Host("c", C)
        self.start(c, [], extra=self.etcd_conf() + "etcd-user = svemig\netcd-password-file = %s\n" % bad)
        v = self.wait_view(c, "a refusal", lambda v: v["stale"] and "refused user svemig" in v["stale_reason"])
        self.assertEqual(self.names(v), ["c"])
        self.assertNotIn("c", self.names(self.view(h["a"])))

    def test_shipped_file_documents_the_etcd_keys(self):
        with open(os.environ.get("MIGRATE_CONF", "migrate.conf")) as f:
            text = f.read()
        for key in ("store", "advertise", "etcd-endpoints", "etcd-prefix", "etcd-cacert", "etcd-cert",
                    "etcd-key", "etcd-user", "etcd-password-file", "etcd-lease", "cluster-set"):
            self.assertRegex(text, r"(?m)^#?%s = " % key, key)


class Tls(EtcdCase):
    """etcd on https, asking clients for a certificate its CA signed."""

    def setUp(self):
        cluster.ClusterTestCase.setUp(self)
        self.tls = etcdtest.make_tls(self.dir)
        self.etcd = etcdtest.Etcd(self.dir, 1, tls=self.tls)
        self.prefix = "/svemig-test/"

    def test_client_certificate(self):
        t = self.tls
        with_cert = self.etcd_conf() + "etcd-cacert = %s\netcd-cert = %s\netcd-key = %s\n" % (
            t["ca"], t["client"], t["client-key"])
        h = self.hosts(a=A, b=B)
        for x in h.values():
            self.start(x, [], extra=with_cert)
        views = self.wait_agree(h.values(), ["a", "b"], [128, 256])
        self.assertTrue(views[0]["store"].startswith("etcd https://127.0.0.1:"), views[0])
        # Without a client certificate etcd refuses the connection: stale, with curl's reason.
        c = cluster.Host("c", C)
        self.start(c, [], extra=self.etcd_conf() + "etcd-cacert = %s\n" % t["ca"])
        v = self.wait_view(c, "a refusal", lambda v: v["stale"] and "cannot reach etcd" in v["stale_reason"])
        self.assertEqual(self.names(v), ["c"])


class ThreeMembers(EtcdCase):
    MEMBERS = 3

    def test_leader_killed_the_view_follows_the_new_leader(self):
        h = self.hosts(a=A, b=B)
        for x in h.values():
            self.start_etcd_host(x)
        self.wait_agree(h.values(), ["a", "b"], [128, 256])
        leader = self.etcd.leader()
        self.assertIsNotNone(leader)
        self.etcd.kill(leader)
        self.etcd.wait_healthy()
        # The view is live through the new leader: a host joining now is seen, none is lost.
        c = cluster.Host("c", D)
        self.start_etcd_host(c)
        self.wait_agree(list(h.values()) + [c], ["a", "b", "c"], [128], stale=False)

    def test_quorum_lost_the_view_is_stale_then_current(self):
        h = self.hosts(a=A, b=B)
        for x in h.values():
            self.start_etcd_host(x)
        self.wait_agree(h.values(), ["a", "b"], [128, 256])
        gone = self.etcd.members[:2]
        for m in gone:
            self.etcd.kill(m)
        # One member of three cannot keep leases alive: stale, hosts as last known.
        views = self.wait_agree(h.values(), ["a", "b"], [128, 256], stale=True)
        for v in views:
            self.assertTrue(v["stale_reason"], v)
        for m in gone:
            self.etcd.start(m)
        self.etcd.wait_healthy()
        self.wait_agree(h.values(), ["a", "b"], [128, 256], stale=False)


if __name__ == "__main__":
    unittest.main(verbosity=2)
