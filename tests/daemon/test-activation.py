#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""svemigd with systemd's protocols, for real: a listening socket handed over
by systemd-socket-activate, and sd_notify to a NOTIFY_SOCKET we read."""

import os
import shutil
import signal
import sys
import time
import unittest

from svemigtest import WAIT, DaemonTestCase, NotifySocket, ctl


def wait_for_path(path, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise AssertionError("%s never appeared" % path)
        time.sleep(0.02)


class Activation(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.notify = NotifySocket(os.path.join(self.dir, "notify"))

    def tearDown(self):
        self.notify.close()
        super().tearDown()

    def test_socket_activation_ready_watchdog_and_stop(self):
        if not shutil.which("systemd-socket-activate"):
            self.skipTest("systemd-socket-activate is not installed")
        sock = os.path.join(self.dir, "activated.sock")
        d, own_sock = self.start_daemon(activate_socket=sock, env={
            "NOTIFY_SOCKET": self.notify.path,
            "WATCHDOG_USEC": "200000",
        })
        wait_for_path(sock)
        # The first connection starts svemigd, which then answers it on the socket it was given.
        r = ctl("--socket", sock, "host-info")
        self.assertEqual(r.returncode, 0, r.stderr + d.output())
        self.assertIn("backend:         sim", r.stdout)

        ready = self.notify.wait_for("READY=1")
        self.assertIn("STATUS=Serving on %s: sim backend" % sock, ready)
        self.notify.wait_for("WATCHDOG=1")
        self.assertIn("(socket-activated)", d.output())
        # It took the passed socket and made none of its own.
        self.assertFalse(os.path.exists(own_sock))

        d.signal(signal.SIGTERM)
        stopping = self.notify.wait_for("STOPPING=1")
        self.assertIn("STATUS=Stopping", stopping)
        self.assertEqual(d.wait(), 0, d.output())
        # The socket is systemd's, not ours to remove.
        self.assertTrue(os.path.exists(sock))

    def test_started_by_hand_binds_its_own_socket(self):
        d, sock = self.start_daemon(env={"NOTIFY_SOCKET": self.notify.path})
        ready = self.notify.wait_for("READY=1")
        self.assertIn("STATUS=Serving on %s" % sock, ready)
        st = os.stat(sock)
        self.assertEqual(st.st_mode & 0o777, 0o660)
        self.assertEqual(st.st_gid, os.getegid())
        r = ctl("--socket", sock, "--json", "host-info")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"backend":"sim"', r.stdout)

        d.signal(signal.SIGINT)
        self.notify.wait_for("STOPPING=1")
        self.assertEqual(d.wait(), 0, d.output())
        self.assertFalse(os.path.exists(sock), "svemigd left its socket behind")

    def test_no_watchdog_unless_asked(self):
        # Without WATCHDOG_USEC svemigd must not claim a watchdog; it still starts and serves.
        d, sock = self.start_daemon(env={"NOTIFY_SOCKET": self.notify.path})
        self.notify.wait_for("READY=1")
        self.assertEqual(ctl("--socket", sock, "host-info").returncode, 0)
        self.assertNotIn("systemd watchdog enabled", d.output())
        self.assertEqual(d.stop(), 0)
        self.assertFalse(any("WATCHDOG=1" in m.split("\n") for m in self.notify.drain()))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
