#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Failure semantics of live migration THROUGH THE DAEMONS (issue 5, items 4
and 5): three svemigd on loopback, and a real TCP proxy between the source a
and the destination b's peer port (a's migrate.conf names the proxy as b).
The proxy parses what crosses it (frames u32 len | u32 xxh32 | PeerMessage,
and the svemig stream between Migrate and Loaded) and cuts, resets,
corrupts or stalls the first migration's traffic at a chosen protocol step;
later connections (a Resolve after a lost Ack) pass untouched. Besides:
a destination out of memory (its configured limit, at the verdict; and
mid-stream, via the VMM's test hook), a slow peer, each side's VMM killed,
and each side's svemigd killed during the handoff. Memory channels (extra
connections of a migration, dialled to the same peer port: after the hellos
a Channel message, then raw stream frames up to a trailer) cross the same
proxy, which recognises them and can cut or corrupt one.

Every case asserts EXACTLY ONE running copy across the three daemons
(`svemigctl guest list --json`), that it equals an unbroken run, and that the
CLI's error names the step."""

import importlib
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import unittest

from svemigtest import SVEMIGCTL, Daemon, stop_and_wait_stopped, vmm_pids, wait_for_socket, xxh32

mig = importlib.import_module("test-migrate")
cluster = importlib.import_module("test-cluster")
A, B, C = cluster.A, cluster.B, cluster.C
BOUND = mig.BOUND

# PeerMessage body field numbers (proto/peer.proto).
MIGRATE, VERDICT, LOADED, COMMIT, ACK, CHANNEL = 5, 6, 7, 8, 9, 14
# Stream frame types (docs/stream-format.md).
VCPU, MEMORY, TRAILER = 1, 2, 3
# A peer frame's checksum: XXH32 of the PeerMessage with this seed ("PEER").
PEER_SEED = 0x50454552
NO_CHANNEL = ("no memory channel crossed the proxy: the source opened none (the engine's memory channels "
              "are not in this build yet?)")


def varint(buf, i):
    v, shift = 0, 0
    while True:
        b = buf[i]
        v |= (b & 0x7F) << shift
        shift += 7
        i += 1
        if not b & 0x80:
            return v, i


def pb_fields(buf):
    """{field number: value} of a protobuf message's varint and length-delimited fields (the last wins)."""
    out, i = {}, 0
    while i < len(buf):
        key, i = varint(buf, i)
        if key & 7 == 0:
            out[key >> 3], i = varint(buf, i)
        elif key & 7 == 2:
            n, i = varint(buf, i)
            out[key >> 3], i = buf[i:i + n], i + n
        elif key & 7 == 1:
            out[key >> 3], i = buf[i:i + 8], i + 8
        elif key & 7 == 5:
            out[key >> 3], i = buf[i:i + 4], i + 4
        else:
            break
    return out


def pb_varint(v):
    out = b""
    while True:
        if v < 0x80:
            return out + bytes([v])
        out += bytes([(v & 0x7F) | 0x80])
        v >>= 7


def body_field(payload):
    """The PeerMessage's oneof field number: its first key's."""
    key, shift, i = 0, 0, 0
    while i < len(payload):
        b = payload[i]
        key |= (b & 0x7F) << shift
        shift += 7
        i += 1
        if not b & 0x80:
            break
    return key >> 3


class Fault:
    """What to do, in which direction ('up' = source to destination), at which event:
    a frame's body field (('frame', n)), the first VCPU frame of the stream (('stream', VCPU)),
    or N stream bytes after the header (('bytes', N)); on a memory channel of the migration, the
    first frame of a type (('channel-stream', MEMORY)) or N of its stream bytes (('channel-bytes', N)).
    Actions: cut, reset, corrupt (the unit's last byte), corrupt-payload (a stream frame's first payload
    byte), stall, or None (only the hooks). hook runs before the event's bytes are forwarded, after once
    the proxy has handed them to the other end's socket."""

    def __init__(self, direction, event, action, hook=None, after=None):
        self.direction, self.event, self.action, self.hook, self.after = direction, event, action, hook, after


class Proxy:
    """A TCP proxy; the first connection carrying a Migrate gets the fault."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.fault = None
        self.fired = threading.Event()
        self.seen = []  # (direction, event) of the faulted connection, for the record
        self.lock = threading.Lock()
        self.migrations = 0
        self.first_id = None  # the faulted migration's id (Migrate.id)
        self.channels = []  # indexes of the faulted migration's memory channels seen
        self.greeting = None  # the first connection's first two frames up (Hello, HostInfo), as sent
        self.closed = False
        self.errors = []  # what went wrong in the proxy itself, for a failure's message
        self.conns = []
        self.acceptor = threading.Thread(target=self.accept, daemon=True)
        self.acceptor.start()

    def close(self):
        """Stops every thread of the proxy before its sockets are closed: a thread that outlived its
        test could take a connection of the next one from a socket that reused the number of one of
        its own (it happened: a channel accepted by the last test's proxy, sent to its dead daemon)."""
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self.acceptor.join(BOUND)
        with self.lock:
            conns = list(self.conns)
        for conn in conns:
            self.kill(conn, False)
        for conn in conns:
            for t in conn["threads"]:
                t.join(BOUND)
        self.sock.close()

    def accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.closed:
                c.close()
                return
            try:
                s = socket.create_connection(self.target)
            except OSError as e:
                self.errors.append("connecting to the destination: %r" % e)
                c.close()
                continue
            conn = {"faulted": False, "c": c, "s": s, "dead": False, "reset": False, "pumps": 2, "threads": []}
            for src, dst, direction in ((c, s, "up"), (s, c, "down")):
                conn["threads"].append(threading.Thread(target=self.pump_then_close,
                                                        args=(conn, src, dst, direction), daemon=True))
            with self.lock:
                self.conns.append(conn)
            for t in conn["threads"]:
                t.start()

    def pump_then_close(self, conn, src, dst, direction):
        """A connection's sockets are closed by the last of its two threads: closed before, the
        number of one could be reused by a new connection while the other thread still reads it."""
        try:
            self.pump(conn, src, dst, direction)
        finally:
            self.kill(conn, False)
            with self.lock:
                conn["pumps"] -= 1
                last = conn["pumps"] == 0
            if last:
                for x in (conn["c"], conn["s"]):
                    if conn["reset"]:
                        # Closed with a zero linger time: an RST instead of a FIN.
                        x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    x.close()

    def kill(self, conn, reset, why=""):
        """Ends a connection: both threads wake (a shutdown), and the last closes it (a reset sends
        nothing until then, so that the RST is what the ends see)."""
        with self.lock:
            if conn["dead"]:
                return
            conn["dead"] = True
            conn["reset"] = reset
        if why:
            self.errors.append("%s connection %s: %s" % ("faulted" if conn["faulted"] else "a", conn.get("channel"),
                                                         why))
        for x in (conn["c"], conn["s"]):
            try:
                x.shutdown(socket.SHUT_RD if reset else socket.SHUT_RDWR)
            except OSError:
                pass

    def event(self, conn, direction, ev, unit=b""):
        """Called before the bytes of ev (unit) are forwarded; returns the action to take, or None."""
        if direction == "up" and ev == ("frame", MIGRATE):
            with self.lock:
                self.migrations += 1
                conn["faulted"] = self.migrations == 1
                if conn["faulted"]:
                    self.first_id = pb_fields(pb_fields(unit[8:]).get(MIGRATE, b"")).get(1)
        if direction == "up" and ev == ("frame", CHANNEL):
            ch = pb_fields(pb_fields(unit[8:]).get(CHANNEL, b""))
            conn["channel"] = ch.get(2, 0)
            with self.lock:
                conn["faulted"] = self.first_id is not None and ch.get(1) == self.first_id
                if conn["faulted"]:
                    self.channels.append(conn["channel"])
        f = self.fault
        if not conn["faulted"] or not f or self.fired.is_set():
            return None
        if (direction, ev) != (f.direction, f.event):
            return None
        self.fired.set()
        if f.hook:
            f.hook()
        conn["after"] = f.after
        return f.action

    @staticmethod
    def unit_size(mode, buf):
        """Bytes of the next whole unit at the start of buf, or None until its head is there."""
        head = {"frames": 8, "preamble": 16, "stream": 20}[mode]
        if len(buf) < head:
            return None
        if mode == "frames":
            return 8 + struct.unpack_from("<I", buf)[0]
        if mode == "preamble":
            return 16 + struct.unpack_from("<I", buf, 12)[0] + 8
        return 20 + struct.unpack_from("<I", buf, 8)[0] + 8

    def pump(self, conn, src, dst, direction):
        buf = b""
        # 'up' after a Migrate: 'preamble', then 'stream' until the trailer; after a Channel: 'stream'
        mode = "frames"
        stream_bytes = 0
        greeting = []
        while True:
            need = self.unit_size(mode, buf)
            if need is None or len(buf) < need:
                try:
                    data = src.recv(1 << 16)
                except OSError:
                    data = b""
                if not data:
                    if buf:
                        self.send(conn, dst, buf)
                    self.kill(conn, False, "end of the %s direction" % direction)
                    return
                buf += data
                continue
            unit, buf = buf[:need], buf[need:]
            channel = "channel" in conn
            if mode == "frames":
                ev = ("frame", body_field(unit[8:]))
                if direction == "up" and len(greeting) < 2:
                    greeting.append(unit)
                    if len(greeting) == 2 and self.greeting is None:
                        self.greeting = greeting
            elif mode == "preamble":
                ev = ("preamble", 0)
            else:
                ev = ("channel-stream" if channel else "stream", struct.unpack_from("<H", unit)[0])
            action = self.event(conn, direction, ev, unit)
            f = self.fault
            if action is None and mode == "stream" and f and \
                    f.event[0] == ("channel-bytes" if channel else "bytes") and \
                    stream_bytes + len(unit) >= f.event[1]:
                action = self.event(conn, direction, f.event)
            if action in ("cut", "reset"):
                self.kill(conn, action == "reset")
                return
            if action == "corrupt":
                unit = unit[:-1] + bytes([unit[-1] ^ 0x55])
            if action == "corrupt-payload":
                unit = unit[:20] + bytes([unit[20] ^ 0x55]) + unit[21:]
            if action == "stall":
                # Nothing more crosses, either way, until one end gives up.
                conn["stalled"] = True
                try:
                    while src.recv(1 << 16):
                        pass
                except OSError:
                    pass
                self.kill(conn, False)
                return
            if not self.send(conn, dst, unit):
                return
            after = conn.pop("after", None)
            if after:
                after()
            if mode == "stream":
                stream_bytes += len(unit)
            if direction == "up" and mode == "frames" and ev == ("frame", MIGRATE):
                mode = "preamble"
            elif direction == "up" and mode == "frames" and ev == ("frame", CHANNEL):
                mode = "stream"  # a channel's frames have no preamble
            elif mode == "preamble":
                mode = "stream"
            elif mode == "stream" and ev[1] == TRAILER:
                mode = "frames"

    def send(self, conn, dst, data):
        if conn.get("stalled"):
            return False
        try:
            dst.sendall(data)
            return True
        except OSError:
            self.kill(conn, False)
            return False


class FaultCase(mig.MigrationCase):
    """a, b, c up; a reaches b through the proxy. Small guests."""

    B_ENV = {}
    B_EXTRA = ""
    # The source's [cluster] keys. One connection: the faults below aim at bytes of the migration's own
    # stream, which its memory channels would otherwise carry (ChannelFaults aims at those).
    A_EXTRA = "migration-channels = 0\n"
    SOURCE_BANDWIDTH = None  # bytes/s: slow enough that a fault lands in the step it aims at
    # a's peer-timeout (seconds). No case but SlowPeer's waits for it to run out, so it is the
    # cluster tests' long one: a short one failed the handoff on a loaded machine (a slow Ack taken
    # for a silent peer).
    A_PEER_TIMEOUT_S = cluster.PEER_TIMEOUT_S

    def setUp(self):
        cluster.ClusterTestCase.setUp(self)
        self.h = self.hosts(a=A, b=B, c=C)
        self.proxy = Proxy(self.h["b"].port)
        via_proxy = cluster.Host("b", B)
        via_proxy.port = self.proxy.port
        self.paths = {}
        self.launch("b", [self.h["a"], self.h["c"]], self.B_ENV, self.B_EXTRA)
        self.launch("c", [self.h["a"], self.h["b"]])
        self.launch("a", [via_proxy, self.h["c"]],
                    {"SVEMIG_TEST_MIGRATE_MAX_BANDWIDTH": self.SOURCE_BANDWIDTH} if self.SOURCE_BANDWIDTH else None,
                    self.A_EXTRA)
        for h in self.h.values():
            self.wait_states(h, a="up", b="up", c="up")

    def tearDown(self):
        self.proxy.close()
        super().tearDown()

    def launch(self, name, peers, env=None, extra=""):
        """Starts (or restarts, with the same migrate.conf) one host's svemigd."""
        h = self.h[name]
        if name not in self.paths:
            path, d = self.write_conf(h, peers)
            with open(path) as f:
                text = f.read()
            timeout = self.A_PEER_TIMEOUT_S if name == "a" else cluster.PEER_TIMEOUT_S
            # The proxy parses the frames it passes: plaintext (peer-tls = no, the lab mode).
            text = text.replace("peer-timeout = %ds\n" % cluster.PEER_TIMEOUT_S,
                                "peer-timeout = %ds\npeer-tls = no\n%s" % (timeout, extra))
            with open(path, "w") as f:
                f.write(text)
            self.paths[name] = (path, d, env)
        path, d, env = self.paths[name]
        h.daemon = Daemon(d, path, env=env)
        self.daemons.append(h.daemon)
        wait_for_socket(h.sock, h.daemon)

    def kill_daemon(self, name):
        self.h[name].daemon.proc.kill()
        self.h[name].daemon.proc.wait()

    # --- what every case asserts ---

    def running_copies(self, name):
        where = []
        for host in self.h:
            for g in self.json(host, "guest", "list")["guests"]:
                if g["name"] == name and g["state"] == "running":
                    where.append(host)
        return where

    def assert_one_copy(self, name, host):
        """Exactly one running copy, on host, once the hosts have settled (records of a guest that did
        not arrive go when its VMM has exited)."""
        deadline = time.monotonic() + BOUND
        while True:
            where = self.running_copies(name)
            listed = [h for h in self.h if name in self.names(h)]
            if where == [host] and listed == [host]:
                break
            if time.monotonic() > deadline:
                self.fail("guest %s runs on %s and is listed on %s; expected only on %s" % (
                    name, where, listed, host))
            time.sleep(0.05)
        g = self.json(host, "guest", "show", name)
        self.wait_steps(host, name, g["steps"] + 50)
        self.assert_equals_unbroken_run(host, name, "c")

    def create(self, host, name, *extra):
        return self.json(host, "guest", "create", name, "--vcpus", "1", "--memory", "4M",
                         "--dirty-rate", "4", *extra)

    def start_guest(self, name="g"):
        self.create("a", name, "--vl", "cluster", "--start")
        self.wait_steps("a", name, 300)
        return name

    def migrate_with(self, fault, name="g"):
        self.proxy.fault = fault
        # Any pause is allowed, so that the migration converges after its first pass however slow the
        # link: under ASan on a loaded machine, through this proxy, the running guest dirtied its pages
        # faster than they crossed, the migration never reached the handoff, and the faults aimed at
        # Loaded, Commit and Ack never fired.
        return self.ctl_on("a", "migrate", name, "b", "--downtime", "60000")

    def assert_failed_at(self, r, steps, code=1):
        self.assertEqual(r.returncode, code, r.stdout + r.stderr)
        self.assertRegex(r.stderr, r"failed at (%s)\b" % "|".join(steps), r.stderr)


class ProxyCase(FaultCase):
    def run_case(self, fault, steps, where="a", code=1):
        name = self.start_guest()
        r = self.migrate_with(fault)
        self.assertTrue(self.proxy.fired.is_set(), "the fault never fired: " + r.stdout + r.stderr)
        if where == "a":
            self.assert_failed_at(r, steps, code)
        else:
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assert_one_copy(name, where)
        return r


class ProxyFaults(ProxyCase):
    """A fault on the wire at each step: the guest runs on a (before COMMIT) or on b (after)."""

    def test_request_reset(self):
        # The Migrate never reaches b: the source sees the reset at the request or waiting for the verdict.
        self.run_case(Fault("up", ("frame", MIGRATE), "reset"), ["request", "verdict"])

    def test_request_corrupt(self):
        self.run_case(Fault("up", ("frame", MIGRATE), "corrupt"), ["request", "verdict"])

    def test_verdict_corrupt(self):
        r = self.run_case(Fault("down", ("frame", VERDICT), "corrupt"), ["verdict"])
        self.assertRegex(r.stderr, "checksum|corrupt", r.stderr)

    def test_verdict_cut(self):
        self.run_case(Fault("down", ("frame", VERDICT), "cut"), ["verdict"])

    def test_precopy_reset(self):
        # Reset 32 KiB into the first pass; a loaded machine may let the source hand the rest of its pass
        # to the kernel first and notice in the next step (docs/migration.md, "Known limits").
        self.run_case(Fault("up", ("bytes", 32 << 10), "reset"), ["pre-copy", "stop-and-copy", "loaded"])

    def test_precopy_corrupt(self):
        # The stream's own checksums catch it at b, which says so (an Abort) before closing.
        self.run_case(Fault("up", ("bytes", 32 << 10), "corrupt"), ["pre-copy", "stop-and-copy", "loaded"])

    def test_stop_and_copy_reset(self):
        # Cut at the first vcpu frame: the source is paused, sending the last of the stream; it may have
        # handed it all to its kernel and notice only while awaiting Loaded.
        self.run_case(Fault("up", ("stream", VCPU), "reset"), ["stop-and-copy", "loaded"])

    def test_loaded_cut(self):
        self.run_case(Fault("down", ("frame", LOADED), "cut"), ["loaded"])

    def test_commit_cut(self):
        # COMMIT never reaches b, whose VMM gives the migration up; the source, in doubt, asks b's
        # svemigd (Resolve, from the shared ledger): ABORTED, so it resumes.
        r = self.run_case(Fault("up", ("frame", COMMIT), "cut"), ["commit", "ack"])
        self.assertIn("did not commit", r.stderr)

    def test_commit_corrupt(self):
        self.run_case(Fault("up", ("frame", COMMIT), "corrupt"), ["commit", "ack"])

    def test_ack_lost_resolves_committed(self):
        # b took COMMIT and runs the guest; the Ack is lost. The source asks b's svemigd, whose listener
        # answers from the ledger b's VMM wrote: COMMITTED, so the migration succeeds.
        r = self.run_case(Fault("down", ("frame", ACK), "reset"), [], where="b")
        self.assertIn("guest g migrated to b", r.stdout)
        self.assertGreaterEqual(self.proxy.migrations, 1)


class SlowPeer(ProxyCase):
    """The source gives up on a silent peer soon: a stall costs this, not the long timeout."""

    A_PEER_TIMEOUT_S = 2 * cluster.TIMEOUT_SCALE

    def test_slow_peer_stalls_until_timeout(self):
        # b says nothing more after its Verdict: a gives up after its peer-timeout and resumes.
        r = self.run_case(Fault("down", ("frame", VERDICT), "stall"), ["verdict", "pre-copy"])
        self.assertRegex(r.stderr, "timed out|no .* for|within", r.stderr)


class ChannelFaults(FaultCase):
    """A fault on one of the migration's memory channels (at the default migration-channels): the
    migration fails, naming the step, and the guest runs on at a as if nothing had happened."""

    A_EXTRA = ""

    def run_case(self, fault):
        name = self.start_guest()
        r = self.migrate_with(fault)
        if not self.proxy.channels:
            self.skipTest(NO_CHANNEL)
        self.assertTrue(self.proxy.fired.is_set(), "the fault never fired on channels %s: %s%s\nproxy: %s\nb's log:\n%s" % (
            self.proxy.channels, r.stdout, r.stderr, self.proxy.errors, self.h["b"].daemon.output()))
        self.assert_failed_at(r, ["pre-copy", "stop-and-copy", "loaded"])
        self.assert_one_copy(name, "a")
        return r

    def test_channel_reset_mid_precopy(self):
        self.run_case(Fault("up", ("channel-bytes", 32 << 10), "reset"))

    def test_channel_memory_frame_corrupt(self):
        # One byte of a MEMORY frame's payload: its checksum catches it at b, which aborts the migration.
        self.run_case(Fault("up", ("channel-stream", MEMORY), "corrupt-payload"))

    def test_stray_channel_is_closed(self):
        # A channel of a migration b has no guest arriving by: b's svemigd closes it and says so. The
        # connection is made by hand, with the Hello and HostInfo a's svemigd sent through the proxy.
        deadline = time.monotonic() + BOUND
        while self.proxy.greeting is None:
            self.assertLess(time.monotonic(), deadline, "a never connected to b through the proxy")
            time.sleep(0.02)
        for frame in self.proxy.greeting:
            self.assertEqual(struct.unpack_from("<I", frame, 4)[0], xxh32(frame[8:], PEER_SEED),
                             "this test's XXH32 disagrees with the daemon's")
        mid = bytes(range(0xA0, 0xB0))
        body = pb_varint(1 << 3 | 2) + pb_varint(len(mid)) + mid + pb_varint(2 << 3) + pb_varint(3)
        msg = pb_varint(CHANNEL << 3 | 2) + pb_varint(len(body)) + body
        with socket.create_connection(("127.0.0.1", self.h["b"].port), timeout=BOUND) as s:
            s.sendall(b"".join(self.proxy.greeting) + struct.pack("<II", len(msg), xxh32(msg, PEER_SEED)) + msg)
            try:
                while s.recv(1 << 16):  # b's Hello and HostInfo, then the end
                    pass
            except ConnectionResetError:
                pass  # closed with the Channel unread: a reset
        self.h["b"].daemon.wait_for_log("peer a: memory channel 3 of migration %s, which no guest is arriving "
                                        "by here" % mid.hex())


class DestinationOutOfMemory(FaultCase):
    """b may take at most 2 MiB of guest RAM (incoming-memory-limit)."""

    B_EXTRA = "incoming-memory-limit = 2M\n"

    def test_refused_at_verdict(self):
        name = self.start_guest()
        r = self.migrate_with(None)
        self.assert_failed_at(r, ["verdict"], code=4)
        # Refused by b's svemigd from the stream's header, before any VMM there (docs/migration.md "Admission").
        self.assertIn("its stream asks for 4.0 MiB of guest memory; with the guests arriving now (0 KiB) that "
                      "passes host b's limit for guests arriving at once, 2.0 MiB", r.stderr)
        self.assert_one_copy(name, "a")


class DestinationOutOfMemoryMidStream(FaultCase):
    """b's receiving VMM runs out of memory during pre-copy (its test hook)."""

    B_ENV = {"SVEMIG_TEST_RECV_FAIL_AT": "pre-copy", "SVEMIG_TEST_RECV_FAIL_ERRNO": "12"}

    def test_enomem_mid_stream(self):
        name = self.start_guest()
        r = self.migrate_with(None)
        self.assert_failed_at(r, ["pre-copy", "stop-and-copy", "loaded"])
        self.assertIn("Cannot allocate memory", r.stderr)
        self.assert_one_copy(name, "a")


class KilledProcesses(FaultCase):
    def vmm_pid(self, host, receiving):
        return next(vmm_pids(os.path.join(self.dir, host), receiving), None)

    def kill_vmm(self, host, receiving):
        pid = self.vmm_pid(host, receiving)
        self.assertIsNotNone(pid, "no VMM to kill on " + host)
        os.kill(pid, signal.SIGKILL)

    def test_destination_vmm_killed_mid_stream(self):
        name = self.start_guest()
        r = self.migrate_with(Fault("up", ("bytes", 32 << 10), None, hook=lambda: self.kill_vmm("b", True)))
        self.assert_failed_at(r, ["pre-copy", "stop-and-copy", "loaded"])
        self.assert_one_copy(name, "a")

    def test_source_vmm_killed_after_commit(self):
        # Killed once COMMIT is on its way: b runs the guest; a's record says its VMM died, not running.
        name = self.start_guest()
        pid = self.vmm_pid("a", False)
        # Stopped before the COMMIT crosses (so that it does nothing more), killed once the proxy
        # has handed the COMMIT to b's socket: b reads it before the end of the connection.
        r = self.migrate_with(Fault("up", ("frame", COMMIT), None, hook=lambda: stop_and_wait_stopped(pid),
                                    after=lambda: os.kill(pid, signal.SIGKILL)))
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        deadline = time.monotonic() + BOUND
        while self.json("a", "guest", "show", name)["state"] != "dead":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        self.json("a", "guest", "delete", name)
        self.assert_one_copy(name, "b")

    def test_destination_svemigd_killed_during_handoff(self):
        # b's svemigd dies as its VMM says Loaded; the VMM completes the handoff on its own. The restarted
        # svemigd finds the guest's record (arriving) and adopts it by the ledger: COMMITTED.
        name = self.start_guest()
        r = self.migrate_with(Fault("down", ("frame", LOADED), None, hook=lambda: self.kill_daemon("b")))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.launch("b", [])
        self.h["b"].daemon.wait_for_log("adopted with its VMM")
        self.assert_one_copy(name, "b")

    def test_destination_svemigd_killed_then_migration_fails(self):
        # b's svemigd dies mid-stream and the stream is then cut: its VMM gives up. The restarted svemigd
        # drops the record (the ledger says aborted, or its VMM is gone undecided).
        name = self.start_guest()
        self.proxy.fault = Fault("up", ("bytes", 32 << 10), "reset", hook=lambda: self.kill_daemon("b"))
        r = self.ctl_on("a", "migrate", name, "b", "--downtime", "60000")
        self.assert_failed_at(r, ["pre-copy", "stop-and-copy", "loaded"])
        self.launch("b", [])
        self.h["b"].daemon.wait_for_log("did not arrive")
        self.assert_one_copy(name, "a")

    def test_source_svemigd_killed_during_handoff(self):
        # a's svemigd dies while its VMM waits for Loaded; the VMM completes the migration, records where
        # the guest went and exits. The restarted svemigd does not list it.
        name = self.start_guest()
        r = self.migrate_with(Fault("down", ("frame", LOADED), None, hook=lambda: self.kill_daemon("a")))
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        deadline = time.monotonic() + BOUND
        while self.vmm_pid("a", False):
            self.assertLess(time.monotonic(), deadline, "a's VMM never exited")
            time.sleep(0.05)
        self.launch("a", [])
        self.assert_one_copy(name, "b")
        self.assertIn("while no svemigd saw it end", self.h["a"].daemon.output())


if __name__ == "__main__":
    unittest.main(verbosity=2)
