#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Who may talk to svemigd's peer port (issue 14, item 1).

The attack the issue found: a client that greets as "attacker" (no
configured peer), sends Migrate and a stream, then Commit, got an Ack and a
running guest. Here the client replays, byte for byte, what a real source
sent in a migration that worked (recorded by a proxy in front of the first
destination), to another host, changing only the host name in its Hello.
That host must refuse it after the Hello, say why to the client and in its
journal, and end up with no guest."""

import importlib
import json
import os
import socket
import struct
import subprocess
import threading
import unittest

from svemigtest import SVEMIGCTL, Daemon, wait_for_socket

cluster = importlib.import_module("test-cluster")
faults = importlib.import_module("test-migrate-faults")
A, B, C = cluster.A, cluster.B, cluster.C
pb_fields, pb_varint, xxh32, body_field = faults.pb_fields, faults.pb_varint, faults.xxh32, faults.body_field

HELLO, MIGRATE, VERDICT, LOADED, ACK, ABORT = 1, 5, 6, 7, 9, 10
BOUND = 60 * cluster.TIMEOUT_SCALE  # a bound on hangs only


def frames(data):
    """The peer frames at the start of data (stops at the first that is not whole, or the stream)."""
    out, i = [], 0
    while i + 8 <= len(data):
        n, _ = struct.unpack_from("<II", data, i)
        if n > (1 << 20) or i + 8 + n > len(data):
            break
        out.append((i, data[i + 8:i + 8 + n]))
        i += 8 + n
    return out


def peer_frame(payload):
    return struct.pack("<II", len(payload), xxh32(payload, faults.PEER_SEED)) + payload


def with_host_name(hello_payload, name):
    """A Hello PeerMessage whose host_name (field 4 of Hello, field 1 of PeerMessage) is name."""
    hello = pb_fields(pb_fields(hello_payload)[HELLO])
    body = b""
    for num in sorted(hello):
        v = hello[num]
        if num == 4:
            v = name.encode()
        if isinstance(v, int):
            body += pb_varint(num << 3) + pb_varint(v)
        else:
            body += pb_varint(num << 3 | 2) + pb_varint(len(v)) + v
    return pb_varint(HELLO << 3 | 2) + pb_varint(len(body)) + body


class Recorder:
    """A TCP proxy that keeps, per connection, what the client sent and how many of the target's
    frames it had seen by then (a source waits for the Verdict, Loaded: a replay must too)."""

    def __init__(self, target_port):
        self.target = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []  # per connection: {"up": [(target frames seen, bytes)], "down": bytearray}
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
                t = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the target is not listening yet: this client sees a refusal, the next may not
                c.close()
                continue
            rec = {"up": [], "down": bytearray()}
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self.pump, args=(c, t, rec, "up"), daemon=True).start()
            threading.Thread(target=self.pump, args=(t, c, rec, "down"), daemon=True).start()

    def pump(self, src, dst, rec, direction):
        try:
            while True:
                b = src.recv(1 << 16)
                if not b:
                    break
                with self.lock:  # recorded before it is forwarded: the other side answers after
                    if direction == "up":
                        rec["up"].append((len(frames(bytes(rec["down"]))), b))
                    else:
                        rec["down"] += b
                dst.sendall(b)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def migration(self):
        """[(target frames to wait for, bytes)]: what the source sent on the connection of a Migrate."""
        with self.lock:
            for rec in self.conns:
                f = frames(b"".join(b for _, b in rec["up"]))
                if len(f) >= 3 and body_field(f[2][1]) == MIGRATE:
                    return list(rec["up"])
        return None


class PeerAuth(cluster.ClusterTestCase):
    def setUp(self):
        super().setUp()
        self.h = self.hosts(a=A, b=B, c=C)
        self.rec = Recorder(self.h["b"].port)
        via = cluster.Host("b", B)
        via.port = self.rec.port
        # What a name alone is worth: the recorder reads and replays plaintext (peer-tls = no, the
        # lab mode; test-peer-tls.py shows peer TLS refusing the same).
        self.start(self.h["b"], [self.h["a"], self.h["c"]], extra="[cluster]\npeer-tls = no\n")
        self.start(self.h["c"], [self.h["a"], self.h["b"]], extra="[cluster]\npeer-tls = no\n")
        # One connection: every byte of the migration is on the recorded one.
        path, d = self.write_conf(self.h["a"], [via, self.h["c"]])
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            timeout = "peer-timeout = %ds\n" % cluster.PEER_TIMEOUT_S
            f.write(text.replace(timeout, timeout + "migration-channels = 0\npeer-tls = no\n"))
        self.h["a"].daemon = Daemon(d, path)
        self.daemons.append(self.h["a"].daemon)
        wait_for_socket(self.h["a"].sock, self.h["a"].daemon)
        for h in self.h.values():
            self.wait_states(h, a="up", b="up", c="up")

    def tearDown(self):
        self.rec.close()
        super().tearDown()

    def ok(self, host, *args):
        cmd = [SVEMIGCTL, "--socket", self.h[host].sock] + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=BOUND)
        self.assertEqual(r.returncode, 0, "%s: %s%s\nits log:\n%s" % (
            " ".join(args), r.stdout, r.stderr, self.h[host].daemon.output()))
        return r

    def names(self, host):
        return [g["name"] for g in json.loads(self.ok(host, "--json", "guest", "list").stdout)["guests"]]

    def replay(self, chunks, port):
        """Sends each chunk once the host has sent as many frames as it had in the recording, until it
        closes; returns its frames' (body field, payload)."""
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(BOUND)
        got, cond, closed = bytearray(), threading.Condition(), [False]

        def reader():
            try:
                while True:
                    b = s.recv(1 << 16)
                    if not b:
                        break
                    with cond:
                        got.extend(b)
                        cond.notify()
            except OSError:
                pass
            with cond:
                closed[0] = True
                cond.notify()

        t = threading.Thread(target=reader)
        t.start()
        for need, data in chunks:
            with cond:
                cond.wait_for(lambda: closed[0] or len(frames(bytes(got))) >= need, BOUND)
                if closed[0]:
                    break
            try:
                s.sendall(data)
            except OSError:
                break  # the host closed before taking everything: that is the point
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        t.join(BOUND)
        s.close()
        return [(body_field(p), p) for _, p in frames(bytes(got))]

    def test_stranger_replaying_a_migration_gets_no_guest(self):
        self.ok("a", "guest", "create", "g", "--vcpus", "1", "--memory", "16M", "--dirty-rate", "4",
                "--vl", "cluster", "--start")
        # Paused, it moves in one pass: running, on a loaded machine (ASan, the recording proxy) the
        # guest dirtied its pages faster than the link carried them, and the migration never converged.
        self.ok("a", "guest", "pause", "g")
        self.ok("a", "migrate", "g", "b")
        chunks = self.rec.migration()
        self.assertIsNotNone(chunks, "no connection through the proxy carried a Migrate")
        data = b"".join(b for _, b in chunks)
        (_, hello), = frames(data)[:1]
        self.assertEqual(body_field(hello), HELLO)
        # The same bytes, the same waits; only the Hello names another host.
        replay, rest = [(0, peer_frame(with_host_name(hello, "attacker")))], 8 + len(hello)
        for need, b in chunks:
            if rest >= len(b):
                rest -= len(b)
                continue
            replay.append((need, b[rest:]))
            rest = 0

        answer = self.replay(replay, self.h["c"].port)
        kinds = [k for k, _ in answer]
        self.assertEqual(kinds[:1], [HELLO], kinds)
        self.assertNotIn(VERDICT, kinds)
        self.assertNotIn(LOADED, kinds)
        self.assertNotIn(ACK, kinds)
        self.assertIn(ABORT, kinds, "the stranger was not told why")
        reason = pb_fields(pb_fields(answer[kinds.index(ABORT)][1])[ABORT])[2].decode()
        self.assertIn("host 'attacker' is not a peer of c", reason)
        # Two frames only: c's Hello says nothing about the host (no HostInfo).
        self.assertEqual(kinds, [HELLO, ABORT])
        self.assertEqual(self.names("c"), [])
        self.h["c"].daemon.wait_for_log("refused a peer connection from 127.0.0.1:")
        self.assertIn("host 'attacker' is not a peer of c", self.h["c"].daemon.output())

    def test_forged_names_cannot_forge_log_lines(self):
        s = socket.create_connection(("127.0.0.1", self.h["c"].port))
        s.settimeout(BOUND)
        hello = pb_varint(4 << 3 | 2) + pb_varint(len(b"a\nfake: x")) + b"a\nfake: x"
        hello = pb_varint(1 << 3) + pb_varint(1) + pb_varint(2 << 3) + pb_varint(1) + hello
        s.sendall(peer_frame(pb_varint(HELLO << 3 | 2) + pb_varint(len(hello)) + hello))
        while s.recv(1 << 16):
            pass
        s.close()
        self.h["c"].daemon.wait_for_log("host 'a?fake: x' is not a peer of c")
        self.assertNotIn("\nfake: x", self.h["c"].daemon.output())


if __name__ == "__main__":
    unittest.main()
