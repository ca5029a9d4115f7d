#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Peers and the live cluster view: real svemigd processes on loopback, each
with its own temporary directory, free TCP port and simulated host (its
[sim] VQ map in migrate.conf), seen through `svemigctl cluster`. They find
each other and agree on the negotiated guest set; a peer joining, leaving
or lacking SVE changes the view; a peer at the wrong address, a taken port
and bad [cluster] keys are refused with a reason."""

import json
import os
import signal
import socket
import subprocess
import textwrap
import time
import unittest

import svemigtest as t
from svemigtest import Daemon, DaemonTestCase, ctl, free_port, wait_for_socket

# The three simulated hosts.
A = "128,256,512"
B = "128,256"
C = "128,256,384,512"
NO_SVE = "none"

REFRESH_MS = 200
# The longest wait on a peer. No test waits for it to run out (a peer that leaves closes its
# connections), so it is long: on a loaded machine (make test-stress, a sanitizer build) a peer
# took seconds to answer and was taken for a dead one. SVEMIG_TEST_TIMEOUT_SCALE stretches it.
TIMEOUT_SCALE = t.TIMEOUT_SCALE
PEER_TIMEOUT_S = 20 * TIMEOUT_SCALE
# A bound on hangs, not a timed assertion: joins and leaves show within one or two refresh
# intervals (a leave at once, from the closed connection), far below this.
BOUND_INTERVALS = 150 * TIMEOUT_SCALE


def bits(vq_map):
    return [] if vq_map == NO_SVE else [int(b) for b in vq_map.split(",")]


class Host:
    def __init__(self, name, vq_map, kvm_mode="vhe", kernel="6.12"):
        self.name = name
        self.vq_map = vq_map
        self.kvm_mode = kvm_mode
        self.kernel = kernel
        self.port = free_port()
        self.daemon = None
        self.sock = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port


class ClusterTestCase(DaemonTestCase):
    def hosts(self, **maps):
        """Host objects by name, each with its own port: hosts(a=A, b=B)."""
        return {n: Host(n, m) for n, m in maps.items()}

    def write_conf(self, host, peers, listen=True, extra=""):
        d = os.path.join(self.dir, host.name)
        os.makedirs(d, exist_ok=True)
        host.sock = os.path.join(d, "svemigd.sock")
        text = textwrap.dedent("""\
            [daemon]
            host-name = {n}
            state-directory = {d}/state
            socket = {s}
            socket-group = {g}
            [hypervisor]
            backend = sim
            [sim]
            vq-map = {m}
            kvm-mode = {k}
            kernel = {kern}
            [cluster]
            listen = {l}
            refresh-interval = {r}ms
            peer-timeout = {t}s
            """).format(t=PEER_TIMEOUT_S, n=host.name, d=d, s=host.sock, g=os.getegid(), m=host.vq_map, k=host.kvm_mode,
                        kern=host.kernel,
                        l=host.address if listen else "", r=REFRESH_MS)
        for p in peers:
            text += "[peer %s]\naddress = %s\n" % (p.name, p.address)
        path = os.path.join(d, "migrate.conf")
        with open(path, "w") as f:
            f.write(text + textwrap.dedent(extra))
        return path, d

    def start(self, host, peers, **kw):
        path, d = self.write_conf(host, peers, **kw)
        host.daemon = Daemon(d, path)
        self.daemons.append(host.daemon)
        wait_for_socket(host.sock, host.daemon)
        return host

    def start_all(self, hosts, only=None):
        """Starts each host with every other one as its peer."""
        for h in hosts.values():
            if only is None or h.name in only:
                self.start(h, [p for p in hosts.values() if p is not h])

    def view(self, host):
        r = ctl("--socket", host.sock, "cluster", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def wait_view(self, host, what, predicate):
        """Polls `svemigctl cluster --json` on host until predicate(view) holds; returns the view."""
        deadline = time.monotonic() + BOUND_INTERVALS * REFRESH_MS / 1000.0
        v = None
        while time.monotonic() < deadline:
            v = self.view(host)
            if predicate(v):
                return v
            time.sleep(REFRESH_MS / 4000.0)
        self.fail("%s never saw %s; its last view:\n%s\nits log:\n%s" % (
            host.name, what, json.dumps(v, indent=1), host.daemon.output()))

    @staticmethod
    def state(v, name):
        return next(h for h in v["hosts"] if h["name"] == name)["state"]

    def wait_states(self, host, **states):
        return self.wait_view(host, "states %r" % states,
                              lambda v: all(self.state(v, n) == s for n, s in states.items()))

    def assert_hosts_as_configured(self, v, hosts):
        for h in v["hosts"]:
            if h["state"] == "up":
                cfg = hosts[h["name"]]
                self.assertEqual(h["vl_bits"], bits(cfg.vq_map), h)
                self.assertEqual(h["sve"], cfg.vq_map != NO_SVE, h)
                self.assertEqual((h["backend"], h["counted"]), ("sim", True), h)
                self.assertTrue(h["kernel"], h)
                self.assertIsNone(h["down_reason"], h)


class Negotiation(ClusterTestCase):
    def test_three_hosts_agree(self):
        hosts = self.hosts(a=A, b=B, c=C)
        self.start_all(hosts)
        views = [self.wait_states(h, a="up", b="up", c="up") for h in hosts.values()]

        # What DESIGN.md's algorithm says: full = {128,256}, partial-only starts at 384, so the
        # cap is 256 and G = {128,256}. a and b lack 384 and so limit the cluster; c alone
        # would offer 128..512.
        for h, v in zip(hosts.values(), views):
            self.assertEqual(v["self"], h.name)
            self.assertEqual(v["listen"], h.address)
            self.assertEqual(v["refresh_ms"], REFRESH_MS)
            self.assertEqual(v["guest_bits"], [128, 256], v)
            self.assertEqual(v["max_bits"], 256)
            self.assertEqual(sorted(v["limiting"]), ["a", "b"])
            self.assertEqual(sorted(v["without_limiting"]["excluded"]), ["a", "b"])
            self.assertEqual(v["without_limiting"]["guest_bits"], [128, 256, 384, 512])
            self.assertEqual(v["without_limiting"]["max_bits"], 512)
            self.assertEqual([x["name"] for x in v["hosts"]][0], h.name)
            self.assertEqual([x["self"] for x in v["hosts"]], [True, False, False])
            self.assert_hosts_as_configured(v, hosts)
            for x in v["hosts"]:
                self.assertEqual((x["can_present"], x["reason"]), (True, None), x)
                self.assertEqual(x["limiting"], x["name"] in ("a", "b"), x)
                self.assertEqual(x["address"], None if x["self"] else hosts[x["name"]].address)

        # The offline computation over the same sets agrees with the live view.
        r = ctl("--json", "negotiate", A, B, C)
        self.assertEqual(r.returncode, 0, r.stderr)
        offline = json.loads(r.stdout)
        self.assertEqual(offline["guest_bits"], views[0]["guest_bits"])
        self.assertEqual(offline["without_limiting"]["guest_bits"],
                         views[0]["without_limiting"]["guest_bits"])

        # For a person.
        r = ctl("--socket", hosts["c"].sock, "cluster")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("hosts:     3, 3 up", r.stdout)
        self.assertIn("guest set: 128,256 bits (maximum 256 bits)\n", r.stdout)
        self.assertIn("limiting:  a, b (lacking 384 bits, which another host offers)\n", r.stdout)
        self.assertIn("without a, b: 128,256,384,512 bits (maximum 512 bits)\n", r.stdout)
        self.assertRegex(r.stdout, r"(?m)^c \(self\) +up +sim +\S+ +128,256,384,512 +yes$")
        self.assertRegex(r.stdout, r"(?m)^b +up +sim +\S+ +128,256 +yes, limiting$")

        # The changes were logged with structured PEER= fields (one line each on stderr here).
        log = hosts["a"].daemon.output()
        self.assertRegex(log, r"peer b is up: sim backend, kernel \S+, VLS 128,256 bits.*\[peer=b\]")
        self.assertRegex(log, r"peer c is up: .*VLS 128,256,384,512 bits.*\[peer=c\]")
        self.assertIn("cluster guest set: 128,256 bits (max 256), over 3 of 3 hosts; limited by a, b", log)

    def test_peer_joins_and_leaves(self):
        hosts = self.hosts(a=A, b=B, c=C)
        self.start_all(hosts, only=("a", "c"))
        a, c = hosts["a"], hosts["c"]

        # b is configured but not running: down, with the reason, and not counted.
        v = self.wait_view(a, "b refused", lambda v: "Connection refused" in (
            next(h for h in v["hosts"] if h["name"] == "b")["down_reason"] or "") and self.state(v, "c") == "up")
        b_view = next(h for h in v["hosts"] if h["name"] == "b")
        self.assertEqual((b_view["counted"], b_view["can_present"], b_view["limiting"]), (False, None, False))
        self.assertIn(hosts["b"].address, b_view["down_reason"])
        self.assertEqual(v["guest_bits"], [128, 256])
        self.assertEqual(v["limiting"], ["a"])
        self.assertEqual(v["without_limiting"]["guest_bits"], [128, 256, 384, 512])
        out = ctl("--socket", a.sock, "cluster").stdout
        self.assertRegex(out, r"(?m)^b +down +- +- +- +- \(not counted\)$")
        self.assertRegex(out, r"(?m)^b \(127\.0\.0\.1:\d+\): down since .*: cannot connect to .*Connection refused$")
        before = v["generation"]

        # b joins: both see it within a few refresh intervals, and b limits too.
        self.start(hosts["b"], [a, c])
        for h in (a, c, hosts["b"]):
            v = self.wait_states(h, a="up", b="up", c="up")
            self.assertEqual(sorted(v["limiting"]), ["a", "b"])
            self.assertEqual(v["guest_bits"], [128, 256])
            self.assert_hosts_as_configured(v, hosts)
        self.assertGreater(self.view(a)["generation"], before)
        self.assertRegex(a.daemon.output(), r"peer b is up: .*\[peer=b\]")

        # b dies: its connections close, and it is down again, with the reason.
        hosts["b"].daemon.proc.kill()
        hosts["b"].daemon.wait()
        for h in (a, c):
            v = self.wait_states(h, a="up", b="down", c="up")
            self.assertEqual(v["limiting"], ["a"])
            b_view = next(x for x in v["hosts"] if x["name"] == "b")
            self.assertTrue(b_view["down_reason"])
            self.assertFalse(b_view["counted"])
            # What it said while it was up is still shown.
            self.assertEqual(b_view["vl_bits"], [128, 256])
        self.assertRegex(a.daemon.output(), r"warning: peer b is down: .*\[peer=b\]")

        # b comes back on another host with other lengths (the same name and address): the view
        # follows what it says now, and b no longer limits.
        hosts["b"].vq_map = C
        self.start(hosts["b"], [a, c])
        for h in (a, c):
            v = self.wait_view(h, "b back with 128..512", lambda v: self.state(v, "b") == "up" and next(
                x for x in v["hosts"] if x["name"] == "b")["vl_bits"] == [128, 256, 384, 512])
            self.assertEqual((v["guest_bits"], v["limiting"]), ([128, 256], ["a"]))
        hosts["b"].daemon.stop()

        # c stops cleanly (it says Bye): a alone is left, and nobody limits it.
        c.daemon.stop()
        v = self.wait_states(a, a="up", b="down", c="down")
        self.assertEqual((v["guest_bits"], v["max_bits"]), ([128, 256, 512], 512))
        self.assertEqual((v["limiting"], v["without_limiting"]), ([], None))

    def test_peer_without_sve_drops_the_cluster_to_fpsimd(self):
        hosts = self.hosts(a=A, b=B, c=C, n=NO_SVE)
        self.start_all(hosts, only=("a", "b", "c"))
        a = hosts["a"]
        v = self.wait_states(a, a="up", b="up", c="up", n="down")
        self.assertEqual(v["guest_bits"], [128, 256])

        self.start(hosts["n"], [hosts[x] for x in "abc"])
        for h in hosts.values():
            v = self.wait_states(h, a="up", b="up", c="up", n="up")
            self.assertEqual((v["guest_bits"], v["max_bits"]), ([], 0), v)
            self.assertEqual(v["limiting"], ["n"])
            self.assertEqual(v["without_limiting"]["guest_bits"], [128, 256])
            n = next(x for x in v["hosts"] if x["name"] == "n")
            self.assertEqual((n["sve"], n["vl_bits"], n["can_present"]), (False, [], True))
        out = ctl("--socket", a.sock, "cluster").stdout
        self.assertIn("guest set: no common SVE; FPSIMD only\n", out)
        self.assertRegex(out, r"(?m)^n +up +sim +\S+ +none \(no SVE\) +yes, limiting$")
        self.assertIn("cluster guest set: no common SVE, FPSIMD only", a.daemon.output())

        # It leaves: SVE is back.
        hosts["n"].daemon.proc.kill()
        hosts["n"].daemon.wait()
        v = self.wait_states(a, n="down")
        self.assertEqual(v["guest_bits"], [128, 256])

    def test_guest_created_at_cluster_gets_the_negotiated_set(self):
        hosts = self.hosts(a=A, c=C)
        self.start_all(hosts)
        a = hosts["a"]
        self.wait_states(a, a="up", c="up")
        r = ctl("--socket", a.sock, "--json", "guest", "create", "vm1", "--vcpus", "1", "--memory", "16M",
                "--vl", "cluster")
        self.assertEqual(r.returncode, 0, r.stderr)
        g = json.loads(r.stdout)
        self.assertEqual((g["vl_bits"], g["max_vl_bits"]), ([128, 256], 256))


    def test_hosts_in_different_kvm_modes(self):
        # b runs KVM in nVHE mode: its vcpus read ID_AA64MMFR1_EL1.VH as 0, which no VMM can
        # change. VH is a field only EL2 uses (docs/cpu-baseline.md): not compared, so b
        # differs in nothing that matters, and guests move between a and b.
        hosts = self.hosts(a=A, c=C)
        hosts["b"] = Host("b", B, kvm_mode="nvhe")
        self.start_all(hosts)
        a, b = hosts["a"], hosts["b"]
        v = self.wait_states(a, a="up", b="up", c="up")
        diff = {h["name"]: h["id_difference"] for h in v["hosts"]}
        self.assertEqual(diff, {"a": None, "b": None, "c": None})
        self.assertEqual(v["guest_bits"], [128, 256])
        self.assertEqual(v["cpu"]["conflicts"], [], v["cpu"])
        self.assertEqual(v["cpu"]["el2_only_not_compared"],
                         [{"field": "ID_AA64MMFR1_EL1.VH", "hosts": [0, 2], "values": [1, 0]}], v["cpu"])
        out = ctl("--socket", a.sock, "cluster").stdout
        self.assertIn("EL2-only, not compared: ID_AA64MMFR1_EL1.VH (1 on host 0 (a), 0 on host 2 (b))", out)

        r = ctl("--socket", a.sock, "guest", "create", "vm1", "--vcpus", "1", "--memory", "16M",
                "--vl", "cluster", "--start")
        self.assertEqual(r.returncode, 0, r.stderr)
        for dst in ("b", "c"):
            r = ctl("--socket", a.sock, "migrate", "vm1", dst, "--check")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class Refusals(ClusterTestCase):
    def test_peer_at_the_wrong_address(self):
        hosts = self.hosts(a=A, b=B, c=C)
        a, b, c = hosts["a"], hosts["b"], hosts["c"]
        self.start(c, [a])
        # a believes b lives where c does.
        wrong = Host("b", B)
        wrong.port = c.port
        self.start(a, [wrong])
        # Over peer TLS (the default) c's certificate gives it away before its Hello does.
        v = self.wait_view(a, "the wrong host refused", lambda v: "its certificate names c, not b" in (
            v["hosts"][1]["down_reason"] or ""))
        self.assertEqual(v["hosts"][1]["state"], "down")
        self.assertIn("fix [peer b] address in migrate.conf", v["hosts"][1]["down_reason"])
        self.assertEqual(v["guest_bits"], [128, 256, 512])

    def test_port_in_use(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            h = Host("a", A)
            h.port = s.getsockname()[1]
            path, d = self.write_conf(h, [], extra="[cluster]\n" + t.tls_keys("a"))
            r = subprocess.run([t.SVEMIGD, "--config", path, "--foreground"], capture_output=True, text=True,
                               timeout=t.WAIT)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("cannot listen for peers on %s ([cluster] listen in migrate.conf)" % h.address, r.stderr)
        self.assertIn("Address already in use", r.stderr)

    def test_no_listener_still_sees_its_peers(self):
        hosts = self.hosts(a=A, c=C)
        self.start(hosts["c"], [hosts["a"]])
        self.start(hosts["a"], [hosts["c"]], listen=False)
        v = self.wait_states(hosts["a"], c="up")
        self.assertIsNone(v["listen"])
        self.assertEqual(v["guest_bits"], [128, 256])
        self.assertIn("not listening for peers", ctl("--socket", hosts["a"].sock, "cluster").stdout)


class Config(ClusterTestCase):
    def check(self, text):
        path = os.path.join(self.dir, "m.conf")
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path, subprocess.run([t.SVEMIGD, "--check-config", "--config", path], capture_output=True,
                                    text=True, timeout=t.WAIT)

    def test_cluster_section_printed_and_read_back(self):
        path, r = self.check("""\
            [daemon]
            host-name = a
            [cluster]
            listen = *:7070
            refresh-interval = 250ms
            peer-timeout = 3
            peer-tls = no
            [peer b]
            address = 192.0.2.7:7070
            """)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("[cluster]\nlisten = *:7070\nrefresh-interval = 250ms\npeer-timeout = 3s\n", r.stdout)
        path, again = self.check(r.stdout)
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertEqual(again.stdout.split("\n", 1)[1], r.stdout.split("\n", 1)[1])

    def test_defaults(self):
        path, r = self.check("")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("[cluster]\nlisten = \n# (no listener: peers cannot reach this host)\n"
                      "refresh-interval = 5s\npeer-timeout = 10s\n", r.stdout)

    def assert_refused(self, text, line, *words):
        path, r = self.check(text)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertTrue(r.stderr.startswith("%s:%d: " % (path, line)), r.stderr)
        for w in words:
            self.assertIn(w, r.stderr)

    def test_bad_values(self):
        self.assert_refused("[cluster]\nlisten = 7070\n", 2, "listen = 7070: expected HOST:PORT")
        self.assert_refused("[cluster]\nlisten = *:0\n", 2, "from 1 to 65535")
        self.assert_refused("[cluster]\nrefresh-interval = 5min\n", 2, "expected a duration")
        self.assert_refused("[cluster]\nrefresh-interval = 10ms\n", 2, "from 50ms")
        self.assert_refused("[cluster]\npeer-timeout = -1\n", 2, "expected a duration")
        self.assert_refused("[cluster]\nport = 7070\n", 2, "unknown key 'port' in [cluster]", "listen",
                            "refresh-interval", "peer-timeout")
        self.assert_refused("[peer *:7070]\naddress = a:1\n", 1, "not allowed in a peer name")
        self.assert_refused("[peer b]\naddress = *:7070\n", 2, "expected HOST:PORT")

    def test_peer_named_as_this_host(self):
        self.assert_refused("""\
            [daemon]
            host-name = a
            [peer a]
            address = 192.0.2.7:7070
            """, 3, "[peer a] is this host", "list only the other hosts")

    def test_shipped_file_documents_the_cluster_keys(self):
        with open(os.environ.get("MIGRATE_CONF", "migrate.conf")) as f:
            text = f.read()
        for key in ("[cluster]", "listen", "refresh-interval", "peer-timeout"):
            self.assertRegex(text, r"(?m)^#?%s" % key.replace("[", r"\["), key)


if __name__ == "__main__":
    unittest.main(verbosity=2)
