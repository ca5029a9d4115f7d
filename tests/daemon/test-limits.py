#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Nothing stalls svemigd (issue 14): idle connections on the control socket
and on the peer port are closed after their timeout, connections are limited
in total and per user or peer with a clear refusal, and a request's buffer is
bounded. Each test is an attack that locked clients or peers out before.

No test waits for time: each waits for the daemon to act (a refusal, a
connection closed), bounded only by svemigtest.WAIT."""

import os
import shutil
import socket
import struct
import subprocess
import sys
import unittest

import svemigtest as t
from svemigtest import DaemonTestCase, Client, frame, request

NOBODY = 65534
GROUP = 54323


class ControlSocket(DaemonTestCase):
    def start(self, text, **kw):
        self.daemon, self.sock = self.start_daemon(text, socket_group=str(GROUP), **kw)

    def served_client(self):
        """A connection the daemon has answered once (so counted, whatever the order it accepts in)."""
        c = Client(self.sock)
        self.assertEqual(c.call(1, t.OP_HOST_INFO).code, 0)
        return c

    def test_idle_clients_are_closed_and_no_longer_lock_everyone_out(self):
        # Long enough that the first idle client is still open when the ninth connects, however
        # slowly a loaded machine serves the eight (at 1 s it was closed first, and a slot free).
        timeout = 10 * t.TIMEOUT_SCALE
        self.start("""\
            [daemon]
            client-timeout = %ds
            max-clients = 8
            """ % timeout)
        # Eight connections that ask once and then say nothing: every slot taken (before, forever).
        idle = [self.served_client() for _ in range(8)]
        # The next is refused at once, saying why and what to change.
        c = Client(self.sock)
        r = c.response()
        self.assertEqual((r.id, r.code), (0, t.EUSERS), r)
        self.assertIn("already serves 8 clients, its limit (max-clients in migrate.conf)", r.message)
        self.assertTrue(c.at_eof())
        c.close()
        # Each idle one is told, and closed.
        for c in idle:
            r = c.response()
            self.assertEqual((r.id, r.code), (0, t.ETIMEDOUT), r)
            self.assertIn("no request for %d s (client-timeout in migrate.conf)" % timeout, r.message)
            self.assertTrue(c.at_eof())
            c.close()
        # And the daemon serves again.
        r = t.ctl("--socket", self.sock, "host-info")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_a_client_waiting_for_its_answer_is_not_idle(self):
        # A snapshot held half-way (svemig-vmm's test knob) outlasts the idle timeout many times over.
        self.start("""\
            [daemon]
            client-timeout = 1s
            """, env={"SVEMIG_TEST_SNAPSHOT_PACE_MS": "60000"})
        r = t.ctl("--socket", self.sock, "guest", "create", "big", "--vcpus", "1", "--memory", "256M")
        self.assertEqual(r.returncode, 0, r.stderr)
        c = Client(self.sock)
        c.send(frame(request(1, t.OP_SNAPSHOT, t.field_bytes(1, b"big"))))
        while not (isinstance(m := c.message(), t.Progress) and m.phase == "memory"):
            pass
        # Another client that idles meanwhile is closed: the timeout is running...
        other = Client(self.sock)
        self.assertEqual(other.response().code, t.ETIMEDOUT)
        other.close()
        # ...yet the waiting client still gets its answer: cancel it and see.
        c.send(frame(t.cancel_request(2, 1)))
        codes = {}
        while len(codes) < 2:
            m = c.message()
            if isinstance(m, t.Response):
                codes[m.id] = m.code
        self.assertEqual(codes, {1: t.ECANCELED, 2: 0})
        c.close()

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_one_user_cannot_take_every_connection(self):
        self.start("""\
            [daemon]
            max-clients = 16
            max-clients-per-user = 4
            """)
        mine = [self.served_client() for _ in range(4)]
        c = Client(self.sock)
        r = c.response()
        self.assertEqual((r.id, r.code), (0, t.EUSERS), r)
        self.assertIn("uid %d already has 4 connections open to svemigd" % os.geteuid(), r.message)
        self.assertIn("max-clients-per-user", r.message)
        c.close()
        # Another user still gets in.
        ctl = os.path.join(self.dir, "svemigctl")
        shutil.copy(t.SVEMIGCTL, ctl)
        os.chmod(ctl, 0o755)
        r = subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--groups=%d" % GROUP,
                            ctl, "--socket", self.sock, "host-info"], capture_output=True, text=True,
                           timeout=t.WAIT)
        self.assertEqual(r.returncode, 0, r.stderr)
        for c in mine:
            self.assertEqual(c.call(2, t.OP_HOST_INFO).code, 0)
            c.close()

    def test_a_frame_claiming_a_large_size_is_refused_before_it_is_read(self):
        self.start("")
        # 16 MiB was held per client on a length alone before; now a request is at most 1 MiB.
        c = Client(self.sock)
        c.send(struct.pack("<I", 8 << 20))
        r = c.response()
        self.assertEqual((r.id, r.code), (0, t.EMSGSIZE), r)
        self.assertIn("exceeds the 1 MiB limit", r.message)
        self.assertTrue(c.at_eof())
        c.close()


class PeerPort(DaemonTestCase):
    def start(self, text):
        self.port = t.free_port()
        # The greeting host is one of the daemon's peers (only those get past the Hello);
        # nothing listens at its address, so it is merely down in the cluster view.
        # The silent peers speak the peer protocol from Python: plaintext (peer-tls = no).
        self.daemon, self.sock = self.start_daemon("""\
            [cluster]
            listen = 127.0.0.1:%d
            refresh-interval = 500ms
            peer-tls = no
            """ % self.port + text + """\
            [peer silent]
            address = 127.0.0.1:%d
            """ % t.free_port())

    def greet(self):
        """A connection that says Hello and HostInfo, reads the daemon's, and then says nothing."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=t.WAIT)
        s.sendall(t.peer_greeting("silent"))
        for _ in range(2):  # the daemon's Hello and HostInfo
            n, _ = struct.unpack("<II", self.recv_exact(s, 8))
            self.recv_exact(s, n)
        return s

    @staticmethod
    def recv_exact(s, n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise EOFError("the daemon closed the connection")
            buf += chunk
        return buf

    @staticmethod
    def closed(s):
        """Waits until the daemon closes s; True then."""
        try:
            return s.recv(1) == b""
        except ConnectionResetError:
            return True

    def test_silent_peers_are_dropped(self):
        self.start("""\
            idle-timeout = 1s
            max-connections = 64
            max-connections-per-peer = 64
            """)
        # 64 peers that greet and go silent: before, every slot was theirs forever (poll(-1)).
        silent = [self.greet() for _ in range(64)]
        for s in silent:
            self.assertTrue(self.closed(s), "a silent peer was not dropped")
            s.close()
        self.daemon.wait_for_log("no request for 1000 ms ([cluster] idle-timeout); closed")
        # A peer is served again.
        s = self.greet()
        s.close()

    def test_one_peer_cannot_take_every_connection(self):
        self.start("""\
            max-connections-per-peer = 4
            """)
        held = [self.greet() for _ in range(4)]
        # The fifth from the same address is closed at once, before any Hello, and the journal says why.
        s = socket.create_connection(("127.0.0.1", self.port), timeout=t.WAIT)
        self.assertTrue(self.closed(s))
        s.close()
        self.daemon.wait_for_log("connections from 127.0.0.1 are open already, the limit for one peer "
                                 "([cluster] max-connections-per-peer)")
        for s in held:
            s.close()


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
