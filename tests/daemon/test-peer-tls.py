#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Peer TLS (issue 14, item 1): svemigd's peer port and every memory channel
over mutual TLS, with certificates the test makes (scripts/make-test-ca.sh,
openssl). Daemons on loopback, a TCP proxy in front of the destination that
records the bytes it passes.

A migration over TLS equals an unbroken run, and nothing of it crosses the
proxy in clear (the guest's name, the Hello's host name). Each refusal says
why in the refusing daemon's journal and at the migrating client, with the
guest running on at the source: a peer whose certificate is from another
CA; an expired certificate (at start, and on a peer's side of a handshake);
a destination whose certificate names another host; a Hello naming another
host than its certificate; a plaintext client; under store = etcd, a host
with a good certificate that is not registered in etcd. peer-tls = no (the
lab mode) says so at start and migrates in clear."""

import importlib
import os
import shutil
import socket
import ssl
import subprocess
import threading
import unittest

import svemigtest as t
from svemigtest import Daemon, ctl, wait_for_socket

cluster = importlib.import_module("test-cluster")
mig = importlib.import_module("test-migrate")
A, B, C = cluster.A, cluster.B, cluster.C
BOUND = 60  # a bound on hangs only

GUEST = "tls-zebra-guest"  # a name to look for in the bytes on the wire


class Recorder:
    """A TCP proxy to target_port keeping, per connection and direction, the first KEEP bytes and a count:
    what a migration says first (its Hello, the request naming the guest) lies there. Keeping every
    byte of tens of MB in Python slowed the proxy enough to stall a migration's channels."""

    KEEP = 1 << 16

    def __init__(self, target_port):
        self.target = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []  # per connection: [[head up, count up], [head down, count down]]
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def close(self):
        self.sock.close()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            rec = [[bytearray(), 0], [bytearray(), 0]]
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self.pump, args=(c, up, rec[0]), daemon=True).start()
            threading.Thread(target=self.pump, args=(up, c, rec[1]), daemon=True).start()

    def pump(self, src, dst, rec):
        try:
            while True:
                b = src.recv(1 << 16)
                if not b:
                    break
                with self.lock:
                    if len(rec[0]) < self.KEEP:
                        rec[0] += b[:self.KEEP - len(rec[0])]
                    rec[1] += len(b)
                dst.sendall(b)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def recorded(self):
        """Per connection: (first bytes up, count up, first bytes down, count down)."""
        with self.lock:
            return [(bytes(u[0]), u[1], bytes(d[0]), d[1]) for u, d in self.conns]


def make_cert(directory, name, days=30):
    """A certificate for name signed by the CA in directory (made there if missing); days < 0: expired."""
    t.subprocess.run(["sh", t.MAKE_TEST_CA, directory, name], check=True)
    cert, key = os.path.join(directory, name + ".pem"), os.path.join(directory, name + "-key.pem")
    if days < 0:
        csr = os.path.join(directory, name + ".csr")
        subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=" + name, "-out", csr],
                       check=True, capture_output=True)
        ext = os.path.join(directory, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n" % name)
        subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(directory, "ca.pem"),
                        "-CAkey", os.path.join(directory, "ca-key.pem"), "-CAcreateserial",
                        "-days", str(days), "-extfile", ext, "-out", cert], check=True, capture_output=True)
    return os.path.join(directory, "ca.pem"), cert, key


def tls_text(ca, cert, key):
    return "[cluster]\ntls-ca = %s\ntls-cert = %s\ntls-key = %s\n" % (ca, cert, key)


class TlsCase(mig.MigrationCase):
    """b and c with the run's certificates; a (the source) started by each test, reaching b through
    the recording proxy."""

    def setUp(self):
        cluster.ClusterTestCase.setUp(self)
        self.h = self.hosts(a=A, b=B, c=C)
        self.proxy = Recorder(self.h["b"].port)
        self.via = cluster.Host("b", B)
        self.via.port = self.proxy.port

    def tearDown(self):
        self.proxy.close()
        super().tearDown()

    def start_b_c(self, b_extra="", c_extra=""):
        self.start(self.h["b"], [self.h["a"], self.h["c"]], extra=b_extra)
        self.start(self.h["c"], [self.h["a"], self.h["b"]], extra=c_extra)

    def start_a(self, extra=""):
        self.start(self.h["a"], [self.via, self.h["c"]], extra=extra)

    def migrate_refused(self, *reasons):
        """A guest on a that cannot go to b: svemigctl says why (each of reasons), and it runs on at a."""
        self.create("a", GUEST, "--vl", "cluster", "--start")
        self.wait_steps("a", GUEST, 100)
        r = self.ctl_on("a", "migrate", GUEST, "b")
        self.assertNotEqual(r.returncode, 0, r.stdout)
        for why in reasons:
            self.assertIn(why, r.stderr, "svemigctl migrate's error; a's log:\n%s" % self.h["a"].daemon.output())
        self.assertIn(GUEST, self.names("a"))
        self.assertNotIn(GUEST, self.names("b"))
        g = self.json("a", "guest", "show", GUEST)
        self.assertEqual(g["state"], "running", g)
        return r.stderr


class OverTls(TlsCase):
    def test_migration_over_tls_equals_unbroken_run_and_nothing_is_in_clear(self):
        self.start_b_c()
        self.start_a()
        for h in self.h.values():
            self.wait_states(h, a="up", b="up", c="up")
            self.assertIn("peer TLS on: peers must present a certificate from", h.daemon.output())
        self.create("a", GUEST, "--vl", "cluster", "--start")
        self.wait_steps("a", GUEST, 2000)
        rep = self.migrate("a", GUEST, "b")
        g = self.wait_running("b", GUEST)
        self.wait_steps("b", GUEST, g["steps"] + 500)
        self.assert_equals_unbroken_run("b", GUEST, "a")

        # The link's refreshes, the migration and its memory channels (4 by default) all went
        # through the proxy: every one a TLS session from its first byte, nothing in clear.
        conns = self.proxy.recorded()
        self.assertGreaterEqual(len(conns), 1 + 4, "connections through the proxy")
        moved = sum(n for _, n, _, _ in conns)
        self.assertGreater(moved, rep["bytes_sent"] // 2)
        for up, _, down, _ in conns:
            if not up:
                continue
            self.assertEqual(up[:2], b"\x16\x03", "a ClientHello first")
            # The Hello (its host name, svemig's version) and the request naming the guest come first.
            self.assertNotIn(GUEST.encode(), up + down)
            self.assertNotIn(b"svemig", up[200:] + down[200:])

    def test_peer_with_a_certificate_from_another_ca_is_refused(self):
        other = os.path.join(self.dir, "other-ca")
        self.start_b_c()
        self.start_a(tls_text(*make_cert(other, "a")))
        # a's link to b failed first: svemigctl says so, with the link's reason. Each side distrusts
        # the other's certificate, and which one refuses first is a race: a refuses b's (issuer
        # unknown), or b refused a's and closed the handshake, which a reports as such.
        err = self.migrate_refused("peer b is down")
        self.assertRegex(err, r"TLS: the peer is refused: its certificate is not trusted.*issuer is unknown|"
                         r"TLS: the peer closed the connection during the handshake.*may not trust this "
                         r"host's certificate")
        # b's side of the same handshake: a refused b's certificate (b's CA is not a's).
        self.h["b"].daemon.wait_for_log("refused a peer connection from 127.0.0.1:")
        self.assertRegex(self.h["b"].daemon.output(), r"refused a peer connection from 127\.0\.0\.1:\d+: TLS")

    def test_destination_whose_certificate_names_another_host_is_refused(self):
        ca, cert, key = t.host_cert("c")
        self.start_b_c(b_extra=tls_text(ca, cert, key))
        self.start_a()
        self.migrate_refused("peer b is down", "its certificate names c, not b: fix [peer b] address")
        # b's side: a's alert, or the connection closed in the handshake (the alert lost to the reset).
        self.h["b"].daemon.wait_for_log("refused a peer connection from 127.0.0.1:")
        self.assertRegex(self.h["b"].daemon.output(), r"refused a peer connection from 127\.0\.0\.1:\d+: TLS: the "
                         r"peer (refused this host|closed the connection during the handshake .*: it may not trust "
                         r"this host's certificate)")

    def test_hello_naming_another_host_than_its_certificate_is_refused(self):
        # a speaks as a, with c's certificate (a good one, from the cluster's CA).
        self.start_b_c()
        self.start_a(tls_text(*t.host_cert("c")))
        self.migrate_refused("its Hello says host 'a', but its TLS certificate names c")
        self.h["b"].daemon.wait_for_log("its Hello says host 'a', but its TLS certificate names c")
        self.assertRegex(self.h["b"].daemon.output(),
                         r"refused a peer connection from 127\.0\.0\.1:\d+: its Hello says host 'a'")

    def test_plaintext_peer_is_refused(self):
        self.start_b_c()
        s = socket.create_connection(("127.0.0.1", self.h["b"].port))
        s.sendall(t.peer_greeting("a"))
        s.settimeout(BOUND)
        got = b""
        try:
            while True:
                k = s.recv(4096)
                if not k:
                    break
                got += k
        except OSError:
            pass
        s.close()
        # No HostInfo, nothing of the peer protocol: at most a TLS alert record.
        self.assertTrue(got == b"" or got[0] == 0x15, got[:16])
        self.h["b"].daemon.wait_for_log("refused a peer connection from 127.0.0.1:")
        self.assertRegex(self.h["b"].daemon.output(), r"refused a peer connection from 127\.0\.0\.1:\d+: TLS")


class Expired(TlsCase):
    def test_own_expired_certificate_is_refused_at_start(self):
        expired = os.path.join(self.dir, "expired")
        os.makedirs(expired)
        # The run's CA, so that only the date is wrong.
        for f in ("ca.pem", "ca-key.pem"):
            shutil.copy(os.path.join(t.test_ca(), f), expired)
        ca, cert, key = make_cert(expired, "a", days=-1)
        path, _ = self.write_conf(self.h["a"], [self.h["b"]], extra=tls_text(ca, cert, key))
        r = subprocess.run([t.SVEMIGD, "--check-config", "--config", path], capture_output=True, text=True)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertRegex(r.stderr, r"migrate\.conf:\d+: tls-cert: .*expired")

    def test_peer_presenting_an_expired_certificate_is_refused(self):
        expired = os.path.join(self.dir, "expired")
        os.makedirs(expired)
        for f in ("ca.pem", "ca-key.pem"):
            shutil.copy(os.path.join(t.test_ca(), f), expired)
        ca, cert, key = make_cert(expired, "a", days=-1)
        self.start_b_c()

        # A client with a's expired certificate: b refuses it in the handshake and says why.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(ca)
        ctx.load_cert_chain(cert, key)
        got = b""
        with socket.create_connection(("127.0.0.1", self.h["b"].port)) as raw:
            try:
                with ctx.wrap_socket(raw, server_hostname="b") as s:
                    s.sendall(t.peer_greeting("a"))
                    s.settimeout(BOUND)
                    # TLS 1.3: the server's refusal (an alert, or the connection closed) comes after the
                    # client's Finished.
                    got = s.recv(1)
            except (ssl.SSLError, OSError):
                pass
        self.assertEqual(got, b"", "nothing of the peer protocol comes back")
        self.h["b"].daemon.wait_for_log("refused a peer connection from 127.0.0.1:")
        self.assertRegex(self.h["b"].daemon.output(),
                         r"refused a peer connection from 127\.0\.0\.1:\d+: TLS: the peer is refused: its "
                         r"certificate is not trusted: .*expired")

        # A destination with an expired certificate (a TLS server here, posing as b): the migrating
        # client says why.
        fake = os.path.join(self.dir, "fake-b")
        os.makedirs(fake)
        for f in ("ca.pem", "ca-key.pem"):
            shutil.copy(os.path.join(t.test_ca(), f), fake)
        _, b_cert, b_key = make_cert(fake, "b", days=-1)
        srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        srv.load_cert_chain(b_cert, b_key)
        srv.load_verify_locations(ca)
        srv.verify_mode = ssl.CERT_REQUIRED
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        self.via.port = lsock.getsockname()[1]

        def serve():
            while True:
                try:
                    c, _ = lsock.accept()
                except OSError:
                    return
                try:
                    srv.wrap_socket(c, server_side=True).close()
                except (ssl.SSLError, OSError):
                    c.close()
        threading.Thread(target=serve, daemon=True).start()
        try:
            self.start_a()
            self.migrate_refused("its certificate is not trusted", "expired")
        finally:
            lsock.close()


class EtcdRegistered(cluster.ClusterTestCase):
    def test_host_not_registered_in_etcd_is_refused(self):
        import etcdtest
        e = etcdtest.Etcd(self.dir, 1)
        try:
            h = self.hosts(b=B, x=C)
            self.start(h["b"], [], extra="store = etcd\netcd-endpoints = %s\netcd-prefix = /svemig-tls/\n"
                                         "etcd-lease = 2s\n" % e.endpoints)
            # x has a good certificate from the cluster's CA, but is not in etcd: it knows b by its
            # address alone.
            self.start(h["x"], [h["b"]])
            v = self.wait_view(h["x"], "b refusing x", lambda v: "registered in etcd" in (
                next(y for y in v["hosts"] if y["name"] == "b")["down_reason"] or ""))
            self.assertIn("host 'x' is not a peer of b: only the hosts registered in etcd may connect",
                          next(y for y in v["hosts"] if y["name"] == "b")["down_reason"])
            h["b"].daemon.wait_for_log("only the hosts registered in etcd may connect")
        finally:
            for d in self.daemons:
                d.stop()
            e.stop()


class LabMode(TlsCase):
    def test_peer_tls_no_migrates_in_clear_and_says_so(self):
        lab = "[cluster]\npeer-tls = no\n"
        self.start_b_c(lab, lab)
        self.start_a(lab)
        for h in self.h.values():
            self.wait_states(h, a="up", b="up", c="up")
            self.assertIn("peer TLS is off ([cluster] peer-tls = no in", h.daemon.output())
        self.create("a", GUEST, "--vl", "cluster", "--start")
        self.wait_steps("a", GUEST, 500)
        self.migrate("a", GUEST, "b")
        g = self.wait_running("b", GUEST)
        self.wait_steps("b", GUEST, g["steps"] + 200)
        self.assert_equals_unbroken_run("b", GUEST, "a")
        self.assertTrue(any(GUEST.encode() in u for u, _, _, _ in self.proxy.recorded()), "the request in clear")


if __name__ == "__main__":
    unittest.main()
