#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Stopping svemigd: SIGTERM (or SIGINT) drains. Every request already sent
is answered, nothing new is started, every client is closed, systemd hears
STOPPING=1, and the daemon exits 0."""

import os
import signal
import struct
import sys
import unittest

import svemigtest as t
from svemigtest import DaemonTestCase, Client, NotifySocket, frame, request


class Stop(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.notify = NotifySocket(os.path.join(self.dir, "notify"))
        self.daemon, self.sock = self.start_daemon(env={"NOTIFY_SOCKET": self.notify.path})
        self.notify.wait_for("READY=1")

    def tearDown(self):
        self.notify.close()
        super().tearDown()

    def test_sigterm_drains_and_exits_0(self):
        idle = Client(self.sock)
        partial = Client(self.sock)
        partial.send(struct.pack("<I", 50) + b"\x08\x01")
        busy = Client(self.sock)
        # A connection that is served normally before the stop.
        self.assertEqual(busy.call(1, t.OP_HOST_INFO).code, 0)

        # Freeze the daemon so that the requests and the stop reach it together.
        self.daemon.stop_and_wait_stopped()
        busy.send(b"".join(frame(request(i, t.OP_HOST_INFO)) for i in (2, 3, 4)) +
                  frame(t.cancel_request(5, 999)))
        self.daemon.signal(signal.SIGTERM)
        self.daemon.signal(signal.SIGCONT)

        # Each request sent before the stop is answered: refused, not started, and saying why...
        answers = {}
        for _ in range(4):
            r = busy.response()
            answers[r.id] = r
        for i in (2, 3, 4):
            self.assertEqual(answers[i].code, t.ESHUTDOWN, answers[i])
            self.assertIn("svemigd is stopping, so host-info was not started", answers[i].message)
        # ...except what a stopping daemon still serves: cancel.
        self.assertEqual(answers[5].code, t.ENOENT, answers[5])

        # Then every connection is closed.
        for c in (busy, idle, partial):
            self.assertTrue(c.at_eof())
        stopping = self.notify.wait_for("STOPPING=1")
        self.assertIn("STATUS=Stopping", stopping)
        self.assertEqual(self.daemon.wait(), 0, self.daemon.output())
        out = self.daemon.output()
        self.assertIn("dropping an incomplete request", out)
        self.assertIn("every request is answered and every client closed", out)
        self.assertFalse(os.path.exists(self.sock), "the socket was left behind")

    def test_sigint_stops_an_idle_daemon(self):
        self.daemon.signal(signal.SIGINT)
        self.notify.wait_for("STOPPING=1")
        self.assertEqual(self.daemon.wait(), 0, self.daemon.output())

    def test_repeated_stop_signals(self):
        c = Client(self.sock)
        self.daemon.stop_and_wait_stopped()
        self.daemon.signal(signal.SIGTERM)
        self.daemon.signal(signal.SIGCONT)
        self.notify.wait_for("STOPPING=1")
        self.daemon.signal(signal.SIGTERM)
        self.assertEqual(self.daemon.wait(), 0, self.daemon.output())
        self.assertTrue(c.at_eof())


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
