#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The control socket cannot reach beyond the client's own rights (issue 14).

svemigd runs as root; a file a client names (snapshot PATH, restore PATH,
guest create --payload FILE) is opened by svemigctl with the client's rights
and passed as a descriptor, so that no client reads, writes or replaces what
it could not itself. svemigd's own places stay its own, errors never show
what is in a file, and keep removes only what svemigd named. Each test here
is an attack that worked on the daemon before."""

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import unittest

import svemigtest as t
from svemigtest import DaemonTestCase, Client, frame, request

NOBODY = 65534
GROUP = 54322  # the socket's group, by number: nobody is made a member of it below

SIM = """\
    [sim]
    vq-map = 128-512
    """

SECRET = b"root:*:19000:0:99999:7:::\n" * 4


class ClientFiles(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.daemon, self.sock = self.start_daemon(SIM, socket_group=str(GROUP))
        # svemigctl where another user can run it, whatever the build tree's permissions.
        self.svemigctl = os.path.join(self.dir, "svemigctl")
        shutil.copy(t.SVEMIGCTL, self.svemigctl)
        os.chmod(self.svemigctl, 0o755)
        self.state = os.path.join(self.dir, "state")
        # A file only root may read, in the shape of /etc/shadow.
        self.secret = os.path.join(self.dir, "secret")
        with open(self.secret, "wb") as f:
            f.write(SECRET)
        os.chmod(self.secret, 0o600)

    def ctl(self, *args):
        return t.ctl("--socket", self.sock, *args)

    def ctl_as_nobody(self, *args):
        cmd = ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--groups=%d" % GROUP,
               self.svemigctl, "--socket", self.sock] + list(args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=t.WAIT)

    def ok(self, *args):
        r = self.ctl(*args)
        self.assertEqual(r.returncode, 0, "svemigctl %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
        return r

    def create(self, name):
        self.ok("guest", "create", name, "--vcpus", "1", "--memory", "16M")

    def guest_names(self):
        return [g["name"] for g in json.loads(self.ok("--json", "guest", "list").stdout)["guests"]]

    def assert_no_secret(self, text):
        # Neither the bytes nor their hex (the old "wrong magic 72 6f 6f 74 ...") nor the size.
        self.assertNotIn("root:", text)
        self.assertNotIn("72 6f 6f 74", text)
        self.assertNotIn("%d bytes" % len(SECRET), text)

    # --- svemigd's own places ---

    def test_snapshot_cannot_replace_another_guests_record_or_socket(self):
        self.create("vm1")
        self.create("vm2")
        record = os.path.join(self.state, "guests", "vm2", "guest.json")
        vmm_sock = os.path.join(self.state, "guests", "vm2", "vmm.sock")
        self.ok("--quiet", "snapshot", "vm2")  # the snapshot directory exists
        with open(record, "rb") as f:
            before = f.read()
        for target, why in ((record, "is in svemigd's own state directory"),
                            (os.path.join(self.state, "snapshots", "vm2-x.svemig"),
                             "is in svemigd's own snapshot directory"),
                            (os.path.join(self.state, "anything"), "is in svemigd's own state directory"),
                            (vmm_sock, "is a socket; a snapshot only ever replaces a regular file")):
            with self.subTest(target=target):
                r = self.ctl("snapshot", "vm1", target)
                self.assertNotEqual(r.returncode, 0, r.stdout)
                self.assertIn(why, r.stderr)
        # Through a symbolic link the same.
        link = os.path.join(self.dir, "link")
        os.symlink(os.path.join(self.state, "guests", "vm2"), link)
        r = self.ctl("snapshot", "vm1", os.path.join(link, "guest.json"))
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("is in svemigd's own state directory", r.stderr)
        with open(record, "rb") as f:
            self.assertEqual(f.read(), before, "another guest's record was replaced")
        self.assertTrue(stat.S_ISSOCK(os.lstat(vmm_sock).st_mode), "vm2's VMM socket was replaced")
        # After a restart vm2 is still there, with its VMM.
        self.daemon.stop()
        self.daemon, self.sock = self.start_daemon(SIM, socket_group=str(GROUP))
        self.assertEqual(sorted(self.guest_names()), ["vm1", "vm2"])

    def test_snapshot_never_replaces_a_device_or_fifo(self):
        self.create("vm1")
        targets = []
        fifo = os.path.join(self.dir, "fifo")
        os.mkfifo(fifo)
        targets.append((fifo, "a FIFO", stat.S_ISFIFO))
        null = os.path.join(self.dir, "null")
        try:  # our own /dev/null (1,3): the old daemon turned the real one into a regular file
            os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            targets.append((null, "a character device", stat.S_ISCHR))
        except PermissionError:
            pass
        for path, kind, is_kind in targets:
            with self.subTest(path=path):
                r = self.ctl("snapshot", "vm1", path)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("%s is %s" % (path, kind), r.stderr)
                self.assertTrue(is_kind(os.lstat(path).st_mode), "%s was replaced" % path)
        # A raw client passing a FIFO it opened itself: svemigd checks what it got, and never blocks on it.
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        wfd = os.open(fifo, os.O_WRONLY)
        c = Client(self.sock)
        r = c.call(1, t.OP_SNAPSHOT, t.field_bytes(1, b"vm1") + t.field_bytes(2, fifo.encode()), fd=wfd)
        self.assertEqual(r.code, t.EINVAL, r)
        self.assertIn("is a FIFO; give a regular file", r.message)
        c.close()
        os.close(rfd)
        os.close(wfd)

    # --- the client's own rights ---

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_snapshot_is_written_with_the_clients_rights(self):
        self.create("vm1")
        # Where the client may not write, nothing is written, though svemigd runs as root.
        rootonly = os.path.join(self.dir, "rootonly")
        os.mkdir(rootonly, 0o700)
        r = self.ctl_as_nobody("snapshot", "vm1", os.path.join(rootonly, "x.svemig"))
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("Permission denied", r.stderr)
        self.assertEqual(os.listdir(rootonly), [])
        # Where it may, the file is the client's own.
        mine = os.path.join(self.dir, "mine")
        os.mkdir(mine)
        os.chown(mine, NOBODY, NOBODY)
        path = os.path.join(mine, "vm1.svemig")
        r = self.ctl_as_nobody("snapshot", "vm1", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        st = os.stat(path)
        self.assertEqual((st.st_uid, stat.S_ISREG(st.st_mode)), (NOBODY, True))
        self.assertEqual(os.listdir(mine), ["vm1.svemig"], "a temporary file was left")
        # And it restores.
        r = self.ctl_as_nobody("restore", path, "--name", "back")
        self.assertEqual(r.returncode, 0, r.stderr)

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_restore_and_payload_read_nothing_the_client_cannot(self):
        for args in (("restore", self.secret), ("restore", self.secret, "--name", "x"),
                     ("guest", "create", "p", "--vcpus", "1", "--memory", "16M", "--payload", self.secret)):
            with self.subTest(args=args):
                r = self.ctl_as_nobody(*args)
                self.assertNotEqual(r.returncode, 0, r.stdout)
                self.assertIn("cannot open %s: Permission denied" % self.secret, r.stderr)
                self.assert_no_secret(r.stdout + r.stderr)
        self.assertEqual(self.guest_names(), [])

    def test_errors_never_show_what_is_in_a_file(self):
        # Even one the client may read: what it is not, never what it holds.
        r = self.ctl("restore", self.secret)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("wrong magic: this is not an svemig stream", r.stderr)
        self.assert_no_secret(r.stdout + r.stderr)
        self.assertEqual(self.guest_names(), [])

    # --- nothing blocks the loop on a file ---

    def test_restore_of_a_fifo_stalls_nobody(self):
        fifo = os.path.join(self.dir, "snap.svemig")
        os.mkfifo(fifo)
        # Nobody ever writes to it: the old daemon blocked in open() here, and every client with it.
        p = subprocess.Popen([t.SVEMIGCTL, "--socket", self.sock, "restore", fifo],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=t.WAIT)
        self.assertEqual(p.returncode, 2, err)
        self.assertIn("%s is a FIFO; give a regular file" % fifo, err)
        self.ok("host-info")
        # A raw client passing the FIFO's read end: refused from fstat, the loop never reads it.
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        c = Client(self.sock)
        r = c.call(1, t.OP_RESTORE, t.field_bytes(1, fifo.encode()), fd=rfd)
        self.assertEqual(r.code, t.EINVAL, r)
        self.assertIn("is a FIFO", r.message)
        os.close(rfd)
        self.assertEqual(c.call(2, t.OP_HOST_INFO).code, 0)
        c.close()

    def test_a_descriptor_belongs_to_the_request_it_came_with(self):
        fifo = os.path.join(self.dir, "fifo")
        os.mkfifo(fifo)
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        restore = request(2, t.OP_RESTORE, t.field_bytes(1, fifo.encode()))
        c = Client(self.sock)
        # Pipelined: the descriptor goes with the second request only.
        c.send(frame(request(1, t.OP_HOST_INFO)))
        c.send_fd(frame(restore), rfd)
        c.send(frame(request(3, t.OP_RESTORE, t.field_bytes(1, fifo.encode()))))
        answers = {}
        while len(answers) < 3:
            r = c.response()
            answers[r.id] = r
        self.assertEqual(answers[1].code, 0, answers[1])
        self.assertIn("is a FIFO", answers[2].message)
        self.assertEqual(answers[3].code, t.EPROTO, answers[3])
        # One that came with a request taking none is closed, not kept for the next.
        c.send_fd(frame(request(4, t.OP_HOST_INFO)), rfd)
        self.assertEqual(c.response().code, 0)
        r = c.call(5, t.OP_RESTORE, t.field_bytes(1, fifo.encode()))
        self.assertEqual(r.code, t.EPROTO, r)
        c.close()
        os.close(rfd)

    def test_a_payload_boots_again_from_svemigd_s_copy(self):
        image = os.path.join(self.dir, "payload.bin")
        with open(image, "wb") as f:
            f.write(os.urandom(8192))
        self.ok("guest", "create", "p", "--vcpus", "1", "--memory", "16M", "--payload", image)
        copy = os.path.join(self.state, "guests", "p", "payload.img")
        with open(image, "rb") as a, open(copy, "rb") as b:
            self.assertEqual(a.read(), b.read())
        # The client's file may go: the guest boots again from svemigd's copy, never from the path.
        os.unlink(image)
        self.ok("guest", "stop", "p")
        self.ok("guest", "start", "p")
        g = json.loads(self.ok("--json", "guest", "show", "p").stdout)
        self.assertEqual((g["state"], g["payload"]["image"]), ("running", image))
        # Without the copy (a guest of an older svemigd), it says so rather than open the path.
        self.ok("guest", "stop", "p")
        os.unlink(copy)
        with open(image, "wb") as f:
            f.write(b"x" * 8192)
        r = self.ctl("guest", "start", "p")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("svemigd keeps no copy", r.stderr)
        self.ok("guest", "delete", "p")
        self.assertFalse(os.path.exists(os.path.join(self.state, "guests", "p")))

    # --- keep ---

    def test_keep_prunes_only_what_svemigd_named(self):
        self.create("kp")
        backup = os.path.join(self.dir, "backup")
        os.mkdir(backup)
        named = [os.path.join(backup, "backup-%d.svemig" % i) for i in range(1, 6)]
        for p in named:
            self.ok("snapshot", "kp", p, "--keep", "3")
        self.assertEqual(sorted(os.listdir(backup)), sorted(os.path.basename(p) for p in named),
                         "keep removed files the user named")
        # In svemigd's own directory keep still works, and leaves the named files alone.
        for _ in range(4):
            self.ok("--quiet", "snapshot", "kp", "--keep", "3")
        own = os.listdir(os.path.join(self.state, "snapshots"))
        self.assertEqual(len(own), 3, own)
        self.assertEqual(len(os.listdir(backup)), 5)
        # Deleting the guest removes what svemigd named, never the user's files.
        self.ok("guest", "delete", "kp", "--force")
        self.assertEqual(os.listdir(os.path.join(self.state, "snapshots")), [])
        self.assertEqual(len(os.listdir(backup)), 5)

    # --- older clients, older daemons ---

    def test_a_path_without_its_file_is_refused_with_the_reason(self):
        self.create("vm1")
        path = os.path.join(self.dir, "old.svemig")
        c = Client(self.sock)
        for i, (op, body) in enumerate([
                (t.OP_SNAPSHOT, t.field_bytes(1, b"vm1") + t.field_bytes(2, path.encode())),
                (t.OP_RESTORE, t.field_bytes(1, path.encode())),
                (t.OP_GUEST_CREATE, t.field_bytes(1, b"p") + t.field_varint(2, 1) + t.field_varint(3, 1 << 24)
                 + t.field_bytes(7, path.encode()))], start=1):
            r = c.call(i, op, body)
            self.assertEqual(r.code, t.EPROTO, r)
            self.assertIn("svemigd opens no file a client names", r.message)
            self.assertIn("update it", r.message)
        c.close()
        self.assertFalse(os.path.exists(path))
        self.assertEqual(self.guest_names(), ["vm1"])

    def test_svemigctl_refuses_a_daemon_that_cannot_take_files(self):
        # A stand-in for an older svemigd: it answers HostInfo without the "client-files" feature.
        path = os.path.join(self.dir, "old.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(1)
        snap = os.path.join(self.dir, "x.svemig")
        p = subprocess.Popen([t.SVEMIGCTL, "--socket", path, "snapshot", "vm1", snap],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        conn, _ = srv.accept()
        conn.settimeout(t.WAIT)
        (n,) = t.struct.unpack("<I", conn.recv(4, socket.MSG_WAITALL))
        req = t.parse(conn.recv(n, socket.MSG_WAITALL))
        self.assertIn(t.OP_HOST_INFO, req, "svemigctl did not ask first")
        info = t.field_bytes(1, b"sim") + t.field_bytes(11, b"0.1.0")
        resp = t.field_varint(1, req[1][0]) + t.field_bytes(t.RESULT_HOST_INFO, info)
        conn.sendall(frame(t.field_bytes(1, resp)))
        out, err = p.communicate(timeout=t.WAIT)
        self.assertEqual(p.returncode, 1, err)
        self.assertIn("(version 0.1.0) cannot take the file from svemigctl", err)
        self.assertIn("Update svemigd", err)
        # Nothing was sent after the question, and no file appeared.
        conn.settimeout(5)
        self.assertEqual(conn.recv(1), b"")
        self.assertEqual(sorted(os.listdir(self.dir)).count("x.svemig"), 0)
        conn.close()
        srv.close()


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
