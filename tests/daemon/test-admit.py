#!/usr/bin/env python3
"""Admission control (issue 14 item 2, docs/migration.md "Admission"): a host takes on
no more guest memory than it can back, streams are judged by their header before
anything is allocated, and guests arriving at once stay within their own budget.
Each refusal gives the figures.

The attacks of issue 14 are here: `guest create --memory 17408G`, and a stream whose
4 KiB pages are LZ4 blocks of a few dozen bytes (craft-stream), pushed again and
again on the peer port by a peer; on the old code each of them was taken."""

import json
import os
import socket
import struct
import subprocess
import sys
import time
import unittest

import svemigtest as t
from svemigtest import DaemonTestCase, ctl

CRAFT_STREAM = os.environ["CRAFT_STREAM"]
ENOMEM, EFBIG = 12, 27

# PeerMessage fields (proto/peer.proto).
MIGRATE, VERDICT, LOADED, COMMIT, ACK = 5, 6, 7, 8, 9


def craft(directory, mib):
    """The hostile stream of a mib MiB guest; returns its bytes."""
    path = os.path.join(directory, "crafted-%d.svemig" % mib)
    r = subprocess.run([CRAFT_STREAM, str(mib), path], capture_output=True, text=True, timeout=t.WAIT)
    if r.returncode != 0:
        raise AssertionError("craft-stream: " + r.stderr)
    with open(path, "rb") as f:
        return path, f.read()


def header_size(stream):
    """Preamble, header and header checksum (docs/stream-format.md)."""
    return 16 + struct.unpack("<I", stream[12:16])[0] + 8


class Admit(DaemonTestCase):
    """One daemon and svemigctl."""

    def start(self, text=""):
        self.daemon, self.sock = self.start_daemon(text)

    def ctl(self, *args):
        return ctl("--socket", self.sock, *args)

    def create(self, name, memory):
        return self.ctl("guest", "create", name, "--vcpus", "1", "--memory", memory)

    def assert_ok(self, r):
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def assert_refused(self, r, *texts):
        self.assertNotEqual(r.returncode, 0, r.stdout)
        for text in texts:
            self.assertIn(text, r.stderr)


class Create(Admit):
    def test_a_guest_no_snapshot_could_hold_is_refused(self):
        self.start()
        # The attack: on a 24 GiB host this made a guest that could never be snapshotted.
        self.assert_refused(self.create("huge", "17408G"),
                            "guest create huge: 17408.0 GiB of guest memory is more than a snapshot or a "
                            "migration can ever hold (16384.0 GiB, the stream format's limit)")
        self.assertNotIn("huge", self.ctl("guest", "list").stdout)

    def test_more_than_the_host_backs_is_refused_with_the_figures(self):
        self.start("""\
            [guests]
            host-memory = 256M
            """)
        self.assert_ok(self.create("a", "128M"))
        self.assert_ok(self.create("b", "128M"))
        self.assert_refused(self.create("c", "64M"),
                            "guest create c: 64.0 MiB of guest memory is more than host testhost can back: "
                            "it gives guests 256.0 MiB ([guests] host-memory 256.0 MiB x memory-overcommit "
                            "1.00), and its guests have 256.0 MiB, guests arriving 0 KiB, so 0 KiB is left",
                            "raise [guests] memory-overcommit")
        # A stopped guest gives its memory back; booting it again takes it again.
        self.assert_ok(self.ctl("guest", "stop", "b"))
        self.assert_ok(self.create("c", "64M"))
        self.assert_refused(self.ctl("guest", "start", "b"),
                            "guest start b: 128.0 MiB of guest memory is more than host testhost can back",
                            "its guests have 192.0 MiB")

    def test_overcommit_lets_guests_have_more_than_the_host(self):
        self.start("""\
            [guests]
            host-memory = 256M
            memory-overcommit = 1.5
            """)
        self.assert_ok(self.create("a", "256M"))
        self.assert_ok(self.create("b", "128M"))
        self.assert_refused(self.create("c", "4K"), "it gives guests 384.0 MiB", "memory-overcommit 1.50")

    def test_restore_is_judged_by_its_header(self):
        self.start("""\
            [guests]
            host-memory = 96M
            """)
        path, _ = craft(self.dir, 64)
        self.assert_ok(self.ctl("restore", path, "--name", "r1"))
        self.assert_refused(self.ctl("restore", path, "--name", "r2"),
                            "restore of r2: 64.0 MiB of guest memory is more than host testhost can back",
                            "its guests have 64.0 MiB")
        self.assertNotIn("r2", self.ctl("guest", "list").stdout)


class StepWork(Admit):
    """The work of one step is bounded, and a cancel interrupts a run within a step."""

    def test_an_absurd_dirty_rate_is_refused_with_the_bound(self):
        self.start()
        # The attack: a step of 4294967295 pages took a minute that cancel could not stop.
        r = self.ctl("guest", "create", "g", "--vcpus", "1", "--memory", "16M", "--dirty-rate", "4294967295")
        self.assert_refused(r, "--dirty-rate takes a number of pages from 0 to 4096 (what one step writes "
                               "per vcpu), not '4294967295'")
        # The same asked of svemigd itself, past svemigctl.
        c = t.Client(self.sock)
        body = (t.field_bytes(1, b"g") + t.field_varint(2, 1) + t.field_varint(3, 16 << 20) +
                t.field_bytes(6, t.field_varint(2, 0xFFFFFFFF)))
        resp = c.call(1, t.OP_GUEST_CREATE, body)
        c.close()
        self.assertEqual(resp.code, t.EINVAL, resp)
        self.assertIn("a dirty rate of 4294967295 pages per step is more than a step writes: at most 4096",
                      resp.message)
        self.assertNotIn("g", self.ctl("guest", "list").stdout.split())

    def test_cancel_interrupts_a_run_at_the_maximum_dirty_rate(self):
        self.start()
        self.assert_ok(self.ctl("guest", "create", "g", "--vcpus", "2", "--memory", "256M",
                                "--dirty-rate", "4096"))
        c = t.Client(self.sock)
        # A run that would never end by itself: only the cancel ends it.
        c.send(t.frame(t.request(1, t.OP_GUEST_RUN, t.field_bytes(1, b"g") + t.field_varint(2, 10 ** 15))))
        # Under way: its first progress event comes before its first chunk of steps ends.
        m = c.message()
        self.assertIsInstance(m, t.Progress, m)
        c.send(t.frame(t.cancel_request(2, 1)))
        answers = {}
        while len(answers) < 2:
            m = c.message()
            if isinstance(m, t.Response):
                answers[m.id] = m
        c.close()
        self.assertEqual(answers[2].code, 0, answers[2])
        self.assertEqual(answers[1].code, t.ECANCELED, answers[1])
        self.assertIn("run cancelled after", answers[1].message)
        self.assertIn("the guest is paused there", answers[1].message)
        # Paused where the cancel stopped it, and it runs on from there.
        self.assertIn("paused", self.ctl("guest", "show", "g").stdout)
        before = int(self.show_steps("g"))
        self.assert_ok(self.ctl("guest", "run", "g", "--steps", "1"))
        self.assertGreater(int(self.show_steps("g")), before)

    def show_steps(self, name):
        out = self.ctl("--json", "guest", "show", name).stdout
        return json.loads(out)["steps"]


class PeerPush(DaemonTestCase):
    """A configured peer that pushes crafted streams at the peer port, as the issue's attacker."""

    def start(self, text):
        self.port = t.free_port()
        # The attacker speaks the peer protocol in clear (lab mode): admission is judged
        # here, who may connect in test-peer-tls.py.
        self.daemon, self.sock = self.start_daemon("""\
            [cluster]
            listen = 127.0.0.1:%d
            peer-tls = no
            """ % self.port + text + """\
            [peer attacker]
            address = 127.0.0.1:%d
            """ % t.free_port())
        _, self.stream = craft(self.dir, 64)

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=t.WAIT)
        s.sendall(t.peer_greeting("attacker"))
        for _ in range(2):  # the daemon's Hello and HostInfo
            self.message(s)
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

    def message(self, s):
        """The next PeerMessage: (its body's field number, the body's fields)."""
        n, _ = struct.unpack("<II", self.recv_exact(s, 8))
        fields = t.parse(self.recv_exact(s, n))
        (num, [body]), = fields.items()
        return num, t.parse(body)

    def expect(self, s, num):
        got, body = self.message(s)
        self.assertEqual(got, num, body)
        return body

    def begin(self, name):
        """Migrate and the stream's header; returns the connection, the id and the Verdict."""
        s = self.connect()
        mig_id = os.urandom(16)
        guest = t.field_bytes(1, name.encode())
        s.sendall(t.peer_frame(t.field_bytes(MIGRATE, t.field_bytes(1, mig_id) + t.field_bytes(2, guest))))
        s.sendall(self.stream[:header_size(self.stream)])
        verdict = self.expect(s, VERDICT)
        return s, mig_id, verdict.get(1, [0])[0], verdict.get(2, [b""])[0].decode()

    def finish(self, s, mig_id, name):
        """The rest of the stream, then Commit: the guest is the daemon's."""
        s.sendall(self.stream[header_size(self.stream):])
        self.expect(s, LOADED)
        s.sendall(t.peer_frame(t.field_bytes(COMMIT, t.field_bytes(1, mig_id))))
        ack = self.expect(s, ACK)
        self.assertEqual(ack.get(2, [0])[0], 0, ack)
        s.close()
        self.daemon.wait_for_log("guest %s arrived; VMM pid" % name)

    def push(self, name):
        s, mig_id, code, message = self.begin(name)
        if code == 0:
            self.finish(s, mig_id, name)
        else:
            s.close()
        return code, message

    def test_pushed_again_and_again_until_the_host_is_full(self):
        self.start("""\
            [guests]
            host-memory = 256M
            """)
        # 64 MiB of guest memory in a stream a hundred times smaller: each page is a tiny LZ4 block.
        self.assertLess(len(self.stream), (64 << 20) // 50)
        for i in range(4):
            self.assertEqual(self.push("g%d" % i), (0, ""))
        code, message = self.push("g4")
        self.assertEqual(code, ENOMEM, message)
        self.assertIn("incoming guest g4: 64.0 MiB of guest memory is more than host testhost can back: it "
                      "gives guests 256.0 MiB ([guests] host-memory 256.0 MiB x memory-overcommit 1.00), and "
                      "its guests have 256.0 MiB, guests arriving 0 KiB, so 0 KiB is left", message)
        self.assertNotIn("g4", ctl("--socket", self.sock, "guest", "list").stdout)
        # Refused before any VMM was started for it: the four that came, and no other.
        self.assertEqual(len(list(t.vmm_pids(self.dir))), 4)

    def test_guests_arriving_at_once_stay_within_their_budget(self):
        self.start("""\
            [guests]
            host-memory = 1G
            [cluster]
            incoming-memory-limit = 100M
            """)
        # The first is admitted by its header, and holds its 64 MiB while the rest of its stream waits.
        s, mig_id, code, message = self.begin("first")
        self.assertEqual((code, message), (0, ""))
        code, message = self.push("second")
        self.assertEqual(code, ENOMEM, message)
        self.assertIn("incoming guest second: its stream asks for 64.0 MiB of guest memory; with the guests "
                      "arriving now (64.0 MiB) that passes host testhost's limit for guests arriving at once, "
                      "100.0 MiB ([cluster] incoming-memory-limit); try again once they have arrived",
                      message)
        # Once the first has arrived, the second comes.
        self.finish(s, mig_id, "first")
        self.assertEqual(self.push("second"), (0, ""))

    def test_a_guest_larger_than_the_budget_is_told_to_raise_it(self):
        self.start("""\
            [cluster]
            incoming-memory-limit = 32M
            """)
        code, message = self.push("big")
        self.assertEqual(code, ENOMEM, message)
        self.assertIn("32.0 MiB ([cluster] incoming-memory-limit); raise the limit to take a guest this large",
                      message)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
