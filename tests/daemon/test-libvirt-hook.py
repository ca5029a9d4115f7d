#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""svemig's libvirt hook, run as libvirtd runs it (DOMAIN OP SUBOP -, the
domain XML on stdin) against real svemigd processes (sim backend): what it
refuses and allows, the operations it leaves alone, require-cluster-set
with a peer, and the daemon-down policy when svemigd is gone or hung.
(tests/libvirt/ runs it under a real libvirtd.)"""

import os
import signal
import socket
import subprocess
import textwrap
import unittest

import svemigtest as t
from svemigtest import Daemon, DaemonTestCase, write_config

HOOK = os.environ.get("SVEMIG_LIBVIRT_HOOK", "svemig-libvirt-hook")


def domain(name, *bits, disabled=()):
    feats = "".join("<feature policy='require' name='sve%d'/>" % b for b in bits)
    feats += "".join("<feature policy='disable' name='sve%d'/>" % b for b in disabled)
    return textwrap.dedent("""\
        <domain type='kvm'>
          <name>{n}</name>
          <memory unit='MiB'>256</memory>
          <cpu mode='custom' match='exact'><model fallback='forbid'>max</model>
            <feature policy='require' name='sve'/>{f}
          </cpu>
        </domain>
        """).format(n=name, f=feats)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HookTest(DaemonTestCase):
    def start(self, vq_map="128,256", libvirt="", extra=""):
        self.daemon, self.sock = self.start_daemon("[sim]\nvq-map = %s\n%s\n[libvirt]\n%s" % (vq_map, extra, libvirt))
        self.conf = os.path.join(self.dir, "migrate.conf")

    def hook(self, name, op, subop, xml, sock=None, conf=None):
        env = dict(os.environ, SVEMIG_SOCKET=sock or self.sock, SVEMIG_CONFIG=conf or self.conf)
        return subprocess.run([HOOK, name, op, subop, "-"], input=xml, env=env, capture_output=True, text=True,
                               timeout=t.WAIT)

    def test_refuses_what_the_host_cannot_present(self):
        self.start("128,256")
        for op in ("prepare", "migrate", "restore"):
            r = self.hook("wide", op, "begin", domain("wide", 128, 256, 512))
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("host testhost cannot", r.stderr)
            self.assertIn("testhost lacks vq 4 (512-bit)", r.stderr)
            self.assertIn("svemigctl libvirt pin wide", r.stderr)
        self.daemon.wait_for_log("libvirt restore begin: refused")
        self.assertIn("domain=wide", self.daemon.output())

    def test_allows_what_it_can(self):
        self.start("128,256,512")
        r = self.hook("fits", "prepare", "begin", domain("fits", 128, 256))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.daemon.wait_for_log("libvirt prepare begin: allowed: svemig: host testhost may start domain fits: "
                                 "it gets SVE lengths 128,256")

    def test_disabled_length_the_host_cannot_hide(self):
        self.start("128,256,384,512")
        r = self.hook("odd", "prepare", "begin", domain("odd", 128, 256, 512, disabled=[384]))
        self.assertEqual(r.returncode, 1)
        self.assertIn("offers vq 3 (384-bit) below the domain's maximum of 512 bits and cannot hide it", r.stderr)

    def test_other_operations_left_alone(self):
        self.start("128,256")
        for op, subop in (("started", "begin"), ("release", "end"), ("reconnect", "begin"), ("prepare", "end"),
                          ("stopped", "end"), ("migrate", "end")):
            r = self.hook("wide", op, subop, domain("wide", 128, 256, 512))
            self.assertEqual(r.returncode, 0, "%s %s: %s" % (op, subop, r.stderr))
            self.assertEqual(r.stderr, "")
        # A checked one afterwards: the first line svemigd logs about the domain is its.
        self.hook("wide", "prepare", "begin", domain("wide", 128, 256, 512))
        self.daemon.wait_for_log("domain=wide")
        lines = [l for l in self.daemon.output().splitlines() if "domain=wide" in l]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("libvirt prepare begin", lines[0])

    def test_require_cluster_set_names_the_peer(self):
        pa, pb = free_port(), free_port()
        b_dir = os.path.join(self.dir, "b")
        os.makedirs(b_dir)
        b_conf, b_sock = write_config(b_dir, textwrap.dedent("""\
            [sim]
            vq-map = 128,256
            [cluster]
            listen = 127.0.0.1:{pb}
            [peer testhost]
            address = 127.0.0.1:{pa}
            """).format(pa=pa, pb=pb))
        with open(b_conf) as f:
            text = f.read().replace("host-name = testhost", "host-name = hostb")
        with open(b_conf, "w") as f:
            f.write(text)
        b = Daemon(b_dir, b_conf)
        self.daemons.append(b)
        t.wait_for_socket(b_sock, b)
        self.start("128,256,512", libvirt="require-cluster-set = yes\n", extra=textwrap.dedent("""\
            [cluster]
            listen = 127.0.0.1:{pa}
            refresh-interval = 200ms
            [peer hostb]
            address = 127.0.0.1:{pb}
            """).format(pa=pa, pb=pb))
        self.daemon.wait_for_log("cluster guest set: 128,256 bits")
        r = self.hook("wide", "prepare", "begin", domain("wide", 128, 256, 512))
        self.assertEqual(r.returncode, 1)
        self.assertIn("outside the cluster's SVE set", r.stderr)
        self.assertIn("could not move to host hostb: hostb lacks vq 4 (512-bit)", r.stderr)
        self.assertEqual(self.hook("narrow", "prepare", "begin", domain("narrow", 128, 256)).returncode, 0)
        # An incoming migration or a restore is judged against this host alone.
        self.assertEqual(self.hook("wide", "migrate", "begin", domain("wide", 128, 256, 512)).returncode, 0)

    def test_daemon_down_policy(self):
        self.start("128,256")
        self.daemon.stop()
        r = self.hook("vm", "prepare", "begin", domain("vm", 128))
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot ask svemigd about domain vm", r.stderr)
        self.assertIn("refusing libvirt's prepare, as [libvirt] daemon-down = refuse", r.stderr)
        allow, _ = write_config(self.dir, "[libvirt]\ndaemon-down = allow\n")
        r = self.hook("vm", "prepare", "begin", domain("vm", 128), conf=allow)
        self.assertEqual(r.returncode, 0)
        self.assertIn("allowing libvirt's prepare unchecked, as [libvirt] daemon-down = allow", r.stderr)

    def test_hung_daemon_bounded(self):
        """svemigd stopped (SIGSTOP): the hook gives up after hook-timeout and applies the policy."""
        self.start("128,256", libvirt="hook-timeout = 200ms\n")
        self.daemon.signal(signal.SIGSTOP)
        try:
            r = self.hook("vm", "prepare", "begin", domain("vm", 128))
        finally:
            self.daemon.signal(signal.SIGCONT)
        self.assertEqual(r.returncode, 1)
        self.assertIn("did not answer within 200 ms", r.stderr)
        self.assertIn("daemon-down = refuse", r.stderr)

    def test_bad_input(self):
        self.start("128,256")
        r = self.hook("vm", "prepare", "begin", "<domain><name>vm</name>")
        self.assertEqual(r.returncode, 1)
        self.assertIn("the domain XML does not parse", r.stderr)
        r = subprocess.run([HOOK, "vm"], capture_output=True, text=True, timeout=t.WAIT)
        self.assertEqual(r.returncode, 2)
        self.assertIn("Usage: svemig-libvirt-hook DOMAIN OPERATION", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
