#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Who may use svemigd: root, its own uid and members of socket-group. The
socket is 0660 in that group, and the daemon checks each client's SO_PEERCRED
too, so a client that gets past a loosened socket is still refused."""

import os
import shutil
import sys
import unittest

import svemigtest as t
from svemigtest import DaemonTestCase, ctl

NOBODY = 65534
GROUP = 54321  # a gid no one on the host has, given by number


@unittest.skipUnless(os.geteuid() == 0, "needs root to run clients as other users (setpriv)")
class Permissions(DaemonTestCase):
    def setUp(self):
        super().setUp()
        if not shutil.which("setpriv"):
            self.skipTest("setpriv is not installed")
        self.daemon, self.sock = self.start_daemon(socket_group=str(GROUP))
        # svemigctl where another user can run it, whatever the build tree's permissions.
        self.ctl = os.path.join(self.dir, "svemigctl")
        shutil.copy(t.SVEMIGCTL, self.ctl)
        os.chmod(self.ctl, 0o755)

    def run_as(self, uid, gid, groups=()):
        return t.subprocess.run(
            ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid]
            + (["--groups=" + ",".join(map(str, groups))] if groups else ["--clear-groups"])
            + [self.ctl, "--socket", self.sock, "host-info"],
            capture_output=True, text=True, timeout=t.WAIT)

    def test_socket_is_0660_in_the_group(self):
        st = os.stat(self.sock)
        self.assertEqual(st.st_mode & 0o777, 0o660)
        self.assertEqual(st.st_gid, GROUP)

    def test_outsider_cannot_open_the_socket(self):
        r = self.run_as(NOBODY, NOBODY)
        self.assertEqual(r.returncode, 6, r.stdout + r.stderr)
        self.assertIn("cannot reach svemigd at %s: permission denied" % self.sock, r.stderr)

    def test_outsider_is_refused_by_the_daemon(self):
        # Even when the socket's mode lets anyone connect, svemigd checks who it is.
        os.chmod(self.sock, 0o666)
        r = self.run_as(NOBODY, NOBODY)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("svemigctl: host-info: permission denied: uid %d is not allowed to use svemigd" % NOBODY,
                      r.stderr)
        self.assertIn("members of group %d" % GROUP, r.stderr)
        self.assertIn("refusing client", self.daemon.output())

    def test_refusal_on_the_wire(self):
        os.chmod(self.sock, 0o666)
        # The daemon may refuse and hang up before the request is even sent: its answer still waits.
        script = ("import sys; sys.path.insert(0, %r); import svemigtest as t; c = t.Client(%r)\n"
                  "try:\n    c.send(t.frame(t.request(1, t.OP_HOST_INFO)))\n"
                  "except BrokenPipeError:\n    pass\n"
                  "r = c.response(); print(r.id, r.code, c.at_eof())"
                  % (os.path.dirname(os.path.abspath(t.__file__)), self.sock))
        r = t.subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups",
                              sys.executable, "-c", script], capture_output=True, text=True, timeout=t.WAIT,
                             env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["0", str(t.EACCES), "True"])

    def test_group_members_are_served(self):
        for gid, groups in ((NOBODY, [GROUP]), (GROUP, [])):
            with self.subTest(gid=gid, groups=groups):
                r = self.run_as(NOBODY, gid, groups)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("backend:         sim", r.stdout)

    def test_root_is_served(self):
        r = ctl("--socket", self.sock, "host-info")
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
