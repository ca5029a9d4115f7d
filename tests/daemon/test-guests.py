#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Guests on a real daemon, each in its own svemig-vmm: the lifecycle, run N
steps, snapshot (default directory, keep N, cancel half-way), restore (and
its refusal on an incompatible host), a daemon restart that loses nothing, a
killed VMM, two clients at once, and bad requests. Driven through svemigctl
and the raw API only."""

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import svemigtest as t
from svemigtest import DaemonTestCase, Client, ctl, frame, request

# A host offering 128..512 bits.
SIM = """\
    [sim]
    vq-map = 128-512
    """

# The snapshot's memory phase waits this long per 64 MiB piece (svemig-vmm's test knob), so that a
# cancel lands half-way. A cancel wakes it at once, so a test does not wait it out.
PACE = {"SVEMIG_TEST_SNAPSHOT_PACE_MS": "60000"}


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of ours is not alive; but a killed process's leader turns zombie before its other
    # threads are gone, and its files (the VMM's socket) close only with the last of them.
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return False
    for task in tasks:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, task)) as f:
                if f.read().split(") ")[1][0] not in "ZX":
                    return True
        except OSError:
            continue
    return False


def wait_until(what, predicate, timeout=t.WAIT):
    """Polls predicate() until it returns a true value; bounded by t.WAIT, not a timed assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class Guests(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.daemon, self.sock = self.start_daemon(SIM, **getattr(self, "daemon_kw", {}))

    def ctl(self, *args, **kw):
        return ctl("--socket", self.sock, *args, **kw)

    def ok(self, *args):
        r = self.ctl(*args)
        self.assertEqual(r.returncode, 0, "svemigctl %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
        return r

    def json(self, *args):
        return json.loads(self.ok("--json", *args).stdout)

    def show(self, name, *extra):
        return self.json("guest", "show", name, *extra)

    def create(self, name, *extra, vcpus="2", memory="32M"):
        return self.json("guest", "create", name, "--vcpus", vcpus, "--memory", memory, *extra)

    def state_dir(self):
        return os.path.join(self.dir, "state")


class Lifecycle(Guests):
    def test_create_start_pause_resume_stop_start_delete(self):
        g = self.create("vm1", "--vl", "128,256", "--dirty-rate", "3")
        self.assertEqual((g["state"], g["vcpus"], g["memory_bytes"]), ("created", 2, 32 << 20))
        self.assertEqual((g["vl_bits"], g["max_vl_bits"]), ([128, 256], 256))
        self.assertEqual((g["dirty_pages_per_step"], g["steps"]), (3, 0))
        pid = g["vmm_pid"]
        self.assertTrue(alive(pid))
        self.assertEqual(g["vmm_socket"], os.path.join(self.state_dir(), "guests", "vm1", "vmm.sock"))
        # The record, on disk.
        with open(os.path.join(self.state_dir(), "guests", "vm1", "guest.json")) as f:
            rec = json.load(f)
        self.assertEqual((rec["name"], rec["state"], rec["vmm_pid"]), ("vm1", "created", pid))

        self.assertEqual(self.json("guest", "start", "vm1")["state"], "running")
        # Its dirty rate comes from the steps it runs: from its first steps on, not 0 until a timer fired.
        running = wait_until("steps", lambda: (lambda g: g["steps"] > 0 and g)(self.show("vm1")))
        self.assertGreater(running["dirty_pages_per_second"], 0, running)
        out = self.ok("guest", "show", "vm1").stdout
        self.assertRegex(out, r"dirty rate: +[1-9][0-9]* pages/s \(3 pages per step per vcpu\)")

        paused = self.json("guest", "pause", "vm1")
        self.assertEqual(paused["state"], "paused")
        self.assertEqual(self.show("vm1")["steps"], paused["steps"], "a paused guest ran on")
        self.assertEqual(self.json("guest", "resume", "vm1")["state"], "running")
        wait_until("steps after resume", lambda: self.show("vm1")["steps"] > paused["steps"])

        # Human output.
        out = self.ok("guest", "show", "vm1").stdout
        self.assertIn("state:          running", out)
        self.assertIn("vector lengths: 128,256 bits", out)
        self.assertIn("VMM:            pid %d" % pid, out)

        stopped = self.json("guest", "stop", "vm1")
        self.assertEqual((stopped["state"], stopped["vmm_pid"]), ("stopped", 0))
        wait_until("the VMM to exit", lambda: not alive(pid))
        # The record stays.
        g = self.show("vm1")
        self.assertEqual((g["state"], g["vcpus"], g["vl_bits"]), ("stopped", 2, [128, 256]))
        r = self.ctl("guest", "stop", "vm1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("already stopped", r.stderr)
        r = self.ctl("guest", "pause", "vm1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot pause guest vm1: it is stopped; start it first", r.stderr)

        # Started again, a new VMM boots it from its configuration.
        g = self.json("guest", "start", "vm1")
        self.assertEqual(g["state"], "running")
        self.assertNotEqual(g["vmm_pid"], pid)
        self.assertEqual(g["vl_bits"], [128, 256])

        r = self.ctl("guest", "delete", "vm1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("stop it first, or delete it with --force", r.stderr)
        pid = g["vmm_pid"]
        r = self.ok("guest", "delete", "--force", "vm1")
        self.assertIn("deleted guest vm1", r.stdout)
        wait_until("the VMM to exit", lambda: not alive(pid))
        self.assertEqual(self.json("guest", "list")["guests"], [])
        self.assertFalse(os.path.exists(os.path.join(self.state_dir(), "guests", "vm1")))
        r = self.ctl("guest", "show", "vm1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no guest named vm1", r.stderr)

    def test_create_with_start_and_list(self):
        self.create("b", "--start")
        self.create("a", "--vl", "cluster", vcpus="1")
        guests = self.json("guest", "list")["guests"]
        self.assertEqual([g["name"] for g in guests], ["a", "b"])
        self.assertEqual(guests[1]["state"], "running")
        # "cluster" is, for now, the host's full set.
        self.assertEqual((guests[0]["vl_bits"], guests[0]["cluster"]), ([128, 256, 384, 512], True))
        out = self.ok("guest", "list").stdout
        self.assertRegex(out, r"a +created +1 +32M +128,256,384,512")

    def test_no_sve_guest(self):
        g = self.create("plain", "--vl", "none", vcpus="1")
        self.assertEqual((g["vl_bits"], g["max_vl_bits"]), ([], 0))
        self.assertIn("none (FPSIMD only)", self.ok("guest", "show", "plain").stdout)


class RunAndRestore(Guests):
    def test_run_exact_steps_then_restore_is_identical(self):
        self.create("src", "--dirty-rate", "5")
        g = self.json("guest", "run", "src", "--steps", "3000")
        self.assertEqual((g["state"], g["steps"], g["vcpu_steps"]), ("paused", 6000, [3000, 3000]))
        path = os.path.join(self.dir, "src.svemig")
        snap = self.json("snapshot", "src", path)
        self.assertEqual((snap["path"], snap["steps"]), (path, 6000))
        self.assertEqual(os.path.getsize(path), snap["bytes"])
        # A path relative to svemigctl's directory is made absolute for the daemon.
        r = subprocess.run([t.SVEMIGCTL, "--socket", self.sock, "--json", "restore", "src.svemig", "--name", "copy"],
                           cwd=self.dir, capture_output=True, text=True, timeout=t.WAIT)
        self.assertEqual(r.returncode, 0, r.stderr)
        copy = json.loads(r.stdout)
        self.assertEqual((copy["name"], copy["state"], copy["steps"]), ("copy", "paused", 6000))
        self.assertEqual((copy["restored_from"], copy["dirty_pages_per_step"]), (path, 5))

        for name in ("src", "copy"):
            self.assertEqual(self.json("guest", "run", name, "--steps", "2000")["steps"], 10000)
        a, b = self.show("src", "--digest"), self.show("copy", "--digest")
        self.assertEqual(len(a["digest"]), 32)
        self.assertEqual(a["digest"], b["digest"], "the restored guest diverged")
        # One more step on one side only: the digests part.
        self.json("guest", "run", "copy", "--steps", "1")
        self.assertNotEqual(self.show("copy", "--digest")["digest"], a["digest"])
        # A running guest has no digest.
        self.json("guest", "resume", "src")
        r = self.ctl("guest", "show", "src", "--digest")
        self.assertEqual(r.returncode, 1)
        self.assertIn("pause it", r.stderr)

    def test_restore_takes_the_files_name_and_can_start(self):
        self.create("g")
        path = os.path.join(self.dir, "night-42.svemig")
        self.ok("snapshot", "g", path)
        g = self.json("restore", path, "--start")
        self.assertEqual((g["name"], g["state"]), ("night-42", "running"))
        r = self.ctl("restore", path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("a guest named night-42 already exists", r.stderr)

    def test_snapshot_default_directory_and_keep(self):
        self.create("ck", "--start")
        paths = []
        for i in range(3):
            # The checkpoint unit's own command line.
            r = self.ctl("--quiet", "snapshot", "--keep", "2", "ck")
            self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "", ""))
            paths.append(self.show("ck")["last_snapshot"])
        snapdir = os.path.join(self.state_dir(), "snapshots")
        for p in paths:
            self.assertEqual(os.path.dirname(p), snapdir)
            self.assertRegex(os.path.basename(p), r"^ck-\d{8}T\d{6}\.\d{3}Z\.svemig$")
        self.assertEqual(sorted(os.listdir(snapdir)), sorted(os.path.basename(p) for p in paths[1:]))
        g = self.show("ck")
        self.assertEqual([s["path"] for s in g["snapshots"]], paths[1:])
        self.assertEqual(g["last_snapshot"], paths[2])
        # The pruned file is reported.
        snap = self.json("snapshot", "--keep", "2", "ck")
        self.assertEqual(snap["pruned"], [paths[1]])
        # The guest ran on through its snapshots.
        self.assertEqual(g["state"], "running")
        # Deleting the guest removes what svemigd named, not what a person named.
        own = os.path.join(self.dir, "mine.svemig")
        self.ok("snapshot", "ck", own)
        self.ok("guest", "delete", "--force", "ck")
        self.assertEqual(os.listdir(snapdir), [])
        self.assertTrue(os.path.exists(own))

    def test_snapshot_and_stop(self):
        g = self.create("s", "--start")
        path = os.path.join(self.dir, "last.svemig")
        self.ok("snapshot", "--stop", "s", path)
        g2 = self.show("s")
        self.assertEqual((g2["state"], g2["last_snapshot"]), ("stopped", path))
        wait_until("the VMM to exit", lambda: not alive(g["vmm_pid"]))


class Cancel(Guests):
    daemon_kw = {"env": PACE}

    def snapshot_paths(self):
        return sorted(glob.glob(os.path.join(self.dir, "big.svemig*")))

    def test_cancel_mid_snapshot_leaves_nothing(self):
        g = self.create("big", "--start", memory="256M")
        path = os.path.join(self.dir, "big.svemig")
        c = Client(self.sock)
        # As svemigctl does where O_TMPFILE is missing: a named temporary file, passed to svemigd.
        fd, tmp = tempfile.mkstemp(prefix="big.svemig.", dir=self.dir)
        c.send_fd(frame(request(1, t.OP_SNAPSHOT, t.field_bytes(1, b"big") + t.field_bytes(2, path.encode()))),
                  fd)
        # Wait until it is writing memory: the temporary file exists, the final one not.
        while True:
            m = c.message()
            self.assertIsInstance(m, t.Progress, m)
            if m.phase == "memory":
                break
        self.assertEqual(m.total, 256 << 20)
        self.assertGreater(m.operation, 0)
        partial = self.snapshot_paths()
        self.assertEqual(len(partial), 1, partial)
        self.assertNotEqual(partial[0], path)
        # Cancel by request id on this connection.
        c.send(frame(t.cancel_request(2, 1)))
        answers = {}
        while len(answers) < 2:
            m = c.message()
            if isinstance(m, t.Response):
                answers[m.id] = m
        self.assertEqual(answers[2].code, 0, answers[2])
        self.assertEqual(answers[1].code, t.ECANCELED, answers[1])
        self.assertIn("cancelled", answers[1].message)
        # svemigd named nothing: the final name never appeared, and the client's file is the client's.
        self.assertEqual(self.snapshot_paths(), [tmp])
        os.close(fd)
        os.unlink(tmp)
        # The guest runs on, and lists no snapshot.
        g2 = self.show("big")
        self.assertEqual((g2["state"], g2["last_snapshot"], g2["vmm_pid"]), ("running", "", g["vmm_pid"]))
        c.close()

    def test_svemigctl_cancel_by_operation(self):
        self.create("big", memory="256M")
        path = os.path.join(self.dir, "big.svemig")
        p = subprocess.Popen([t.SVEMIGCTL, "--socket", self.sock, "snapshot", "big", path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Plain progress lines (not a TTY) name the operation.
        op = None
        while op is None:
            line = p.stderr.readline()
            self.assertTrue(line, "svemigctl snapshot ended without progress")
            if "memory" in line:
                op = line.rsplit("operation ", 1)[1].rstrip(")\n")
        r = self.ctl("cancel", op)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cancelling operation %s" % op, r.stdout)
        out, err = p.communicate(timeout=t.WAIT)
        self.assertEqual(p.returncode, 1, err)
        self.assertIn("cancelled", err)
        self.assertEqual(self.snapshot_paths(), [])
        r = self.ctl("cancel", op)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no operation %s is in flight" % op, r.stderr)

    def test_two_clients_at_once(self):
        self.create("big", "--start", memory="256M")
        a = Client(self.sock)
        with tempfile.TemporaryFile(dir=self.dir) as f:
            a.send_fd(frame(request(1, t.OP_SNAPSHOT, t.field_bytes(1, b"big") +
                                    t.field_bytes(2, os.path.join(self.dir, "big.svemig").encode()))),
                      f.fileno())
        while not (isinstance(m := a.message(), t.Progress) and m.phase == "memory"):
            pass
        # While a's snapshot is held half-way, b is served: guests listed, created, run, shown...
        b = Client(self.sock)
        r = b.call(1, t.OP_GUEST_LIST)
        self.assertEqual(r.code, 0, r)
        self.ok("guest", "create", "other", "--vcpus", "1", "--memory", "16M")
        self.assertEqual(self.json("guest", "run", "other", "--steps", "10")["steps"], 10)
        # (running while its memory is written: pre-copy; it pauses only for its vcpus and last pages)
        r = b.call(2, t.OP_GUEST_SHOW, t.guest_ref("big"))
        self.assertEqual(t.guest(r.results[t.RESULT_GUEST])["state"], "running")
        # ...and the busy guest refuses what would disturb its snapshot, saying why.
        r = b.call(3, t.OP_GUEST_PAUSE, t.guest_ref("big"))
        self.assertEqual(r.code, t.EBUSY, r)
        self.assertIn("busy with a snapshot", r.message)
        # a still waits; now it is cancelled.
        a.send(frame(t.cancel_request(2, 1)))
        codes = {}
        while len(codes) < 2:
            m = a.message()
            if isinstance(m, t.Response):
                codes[m.id] = m.code
        self.assertEqual(codes, {1: t.ECANCELED, 2: 0})
        # Cancelled before its pause, it runs on.
        self.assertEqual(self.show("big")["state"], "running")
        a.close()
        b.close()


class Restart(Guests):
    def test_daemon_restart_loses_nothing(self):
        run = self.create("run", "--start")
        self.create("rec")
        snap = os.path.join(self.dir, "rec.svemig")
        self.ok("snapshot", "rec", snap)
        self.ok("guest", "stop", "rec")
        before = wait_until("steps", lambda: (s := self.show("run")["steps"]) > 1000 and s)

        self.assertEqual(self.daemon.stop(), 0)
        # The guest kept running without its daemon.
        self.assertTrue(alive(run["vmm_pid"]))
        vmm = Client(run["vmm_socket"])

        def vmm_show():
            r = vmm.call(1, t.OP_GUEST_SHOW, t.guest_ref("run"))
            self.assertEqual(r.code, 0, r)
            return t.guest(r.results[t.RESULT_GUEST])

        # The vcpus publish their steps a batch at a time, and a loaded machine may not have
        # run one since: wait for progress (bounded), never sample it once.
        between = wait_until("steps without the daemon", lambda: (g := vmm_show())["steps"] > before and g)
        self.assertEqual(between["state"], "running")
        vmm.close()

        self.daemon, self.sock = self.start_daemon(SIM)
        guests = {g["name"]: g for g in self.json("guest", "list")["guests"]}
        self.assertEqual(sorted(guests), ["rec", "run"])
        self.assertEqual((guests["run"]["state"], guests["run"]["vmm_pid"]), ("running", run["vmm_pid"]))
        wait_until("steps after the restart", lambda: self.show("run")["steps"] > between["steps"])
        self.assertEqual((guests["rec"]["state"], guests["rec"]["last_snapshot"]), ("stopped", snap))
        self.daemon.wait_for_log("reconnected to its VMM (pid %d)" % run["vmm_pid"])
        # And it still obeys.
        self.assertEqual(self.json("guest", "pause", "run")["state"], "paused")

    def test_vmm_gone_while_the_daemon_was_away(self):
        g = self.create("gone", "--start")
        self.assertEqual(self.daemon.stop(), 0)
        os.kill(g["vmm_pid"], signal.SIGKILL)
        wait_until("the VMM to die", lambda: not alive(g["vmm_pid"]))
        self.daemon, self.sock = self.start_daemon(SIM)
        g2 = self.show("gone")
        self.assertEqual(g2["state"], "dead")
        self.assertIn("its VMM (pid %d) was gone when svemigd started" % g["vmm_pid"], g2["reason"])


class KilledVmm(Guests):
    def test_killed_vmm_is_reported(self):
        g = self.create("victim", "--start")
        snap = os.path.join(self.dir, "v.svemig")
        self.ok("snapshot", "victim", snap)
        os.kill(g["vmm_pid"], signal.SIGKILL)
        dead = wait_until("the guest to be dead",
                          lambda: (s := self.show("victim"))["state"] == "dead" and "signal" in s["reason"] and s)
        self.assertIn("its VMM (pid %d) was killed by signal 9" % g["vmm_pid"], dead["reason"])
        # Its last snapshot is still listed.
        self.assertEqual(dead["last_snapshot"], snap)
        out = self.ok("guest", "show", "victim").stdout
        self.assertIn("state:          dead", out)
        self.assertIn("reason:         its VMM (pid %d) was killed" % g["vmm_pid"], out)
        r = self.ctl("snapshot", "victim")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot snapshot guest victim: it is dead", r.stderr)
        # Restored from its snapshot, it lives on under another name.
        self.assertEqual(self.json("restore", snap, "--name", "heir")["state"], "paused")
        # Started again, it boots anew.
        self.assertEqual(self.json("guest", "start", "victim")["state"], "running")


class BadRequests(Guests):
    def expect(self, code, text, *args):
        r = self.ctl(*args)
        self.assertEqual(r.returncode, code, (r.stdout, r.stderr))
        self.assertIn(text, r.stderr)

    def test_refusals_with_reasons(self):
        for op in ("start", "pause", "resume", "stop", "delete", "show"):
            self.expect(1, "no guest named ghost on this host", "guest", op, "ghost")
        self.expect(1, "no guest named ghost", "snapshot", "ghost")
        self.expect(1, "no guest named ghost", "guest", "run", "ghost", "--steps", "5")
        self.create("dup", vcpus="1")
        self.expect(1, "a guest named dup already exists", "guest", "create", "dup", "--vcpus", "1",
                    "--memory", "16M")
        # A set the host cannot present exactly: the vq named.
        self.expect(1, "cannot present vector lengths 128,512 bits (it offers 128,256,384,512 bits): vq 2",
                    "guest", "create", "g", "--vcpus", "1", "--memory", "16M", "--vl", "128,512")
        self.expect(1, "cannot present vector lengths 128,256,384,512,640 bits", "guest", "create", "g",
                    "--vcpus", "1", "--memory", "16M", "--vl", "128-640")
        self.expect(1, "guest memory must be a non-zero multiple of 4096 bytes", "guest", "create", "g",
                    "--vcpus", "1", "--memory", "1000")
        self.expect(1, "guest name 'a/x' has '/'", "guest", "create", "a/x", "--vcpus", "1", "--memory", "16M")
        self.expect(1, "must not start with '.'", "guest", "create", "..", "--vcpus", "1", "--memory", "16M")
        self.expect(2, "--vcpus and --memory are required", "guest", "create", "g")
        self.expect(2, "--vl", "guest", "create", "g", "--vcpus", "1", "--memory", "16M", "--vl", "fast")
        self.expect(1, "has never run, so there is nothing to resume; start it", "guest", "resume", "dup")
        self.expect(1, "is not running", "guest", "pause", "dup")
        self.expect(2, "cannot write /nonexistent/dir/x.svemig: its directory", "snapshot", "dup",
                    "/nonexistent/dir/x.svemig")
        garbage = os.path.join(self.dir, "garbage.svemig")
        with open(garbage, "wb") as f:
            f.write(b"not a stream at all" * 100)
        self.expect(1, garbage, "restore", garbage)
        self.expect(1, "cannot open", "restore", os.path.join(self.dir, "missing.svemig"))
        self.expect(2, "unknown command 'fly'", "guest", "fly", "x")
        # Nothing half-made was left by the refusals.
        self.assertEqual([g["name"] for g in self.json("guest", "list")["guests"]], ["dup"])
        self.assertEqual(sorted(os.listdir(os.path.join(self.state_dir(), "guests"))), ["dup"])

    def test_raw_requests(self):
        c = Client(self.sock)
        r = c.call(1, t.OP_GUEST_CREATE, t.field_bytes(1, b"r") + t.field_varint(2, 1))
        self.assertEqual(r.code, t.EINVAL, r)
        self.assertIn("guest memory must be", r.message)
        # A payload named but not passed (an older client): svemigd opens nothing, and says why.
        r = c.call(2, t.OP_GUEST_CREATE, t.field_bytes(1, b"r") + t.field_varint(2, 1) +
                   t.field_varint(3, 1 << 20) + t.field_bytes(7, b"/nonexistent/payload.bin"))
        self.assertEqual(r.code, t.EPROTO, r)
        self.assertIn("svemigd opens no file a client names", r.message)
        r = c.call(3, t.OP_GUEST_RUN, t.field_bytes(1, b"r"))
        self.assertEqual(r.code, t.ENOENT, r)
        r = c.call(4, t.OP_RESTORE, t.field_bytes(1, b"relative.svemig"))
        self.assertEqual(r.code, t.EINVAL, r)
        self.assertIn("absolute path", r.message)
        r = c.call(5, t.OP_SNAPSHOT)
        self.assertEqual(r.code, t.EINVAL, r)
        r = c.call(6, t.OP_GUEST_SHOW)
        self.assertEqual(r.code, t.EINVAL, r)
        self.assertIn("name the guest", r.message)
        c.close()

    def test_restore_on_an_incompatible_host(self):
        # A snapshot of a 512-bit guest...
        self.create("wide", vcpus="1")
        snap = os.path.join(self.dir, "wide.svemig")
        self.ok("snapshot", "wide", snap)
        # ...offered to a host whose CPUs stop at 256 bits.
        other = os.path.join(self.dir, "narrow")
        os.mkdir(other)
        conf, sock = t.write_config(other, "[sim]\nvq-map = 128,256\n")
        d = t.Daemon(other, conf)
        self.daemons.append(d)
        t.wait_for_socket(sock, d)
        r = ctl("--socket", sock, "restore", snap)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn("%s cannot be restored on this host" % snap, r.stderr)
        self.assertIn("512", r.stderr)
        # Over the API: the status says it is an incompatibility.
        c = Client(sock)
        with open(snap, "rb") as f:
            resp = c.call(1, t.OP_RESTORE, t.field_bytes(1, snap.encode()), fd=f.fileno())
        self.assertEqual(resp.code, t.EINVAL, resp)
        self.assertTrue(resp.incompatible)
        c.close()
        # Nothing was created there.
        self.assertEqual(json.loads(ctl("--socket", sock, "--json", "guest", "list").stdout)["guests"], [])
        # A guest at the common set moves fine.
        self.create("narrowed", "--vl", "128,256", vcpus="1")
        snap2 = os.path.join(self.dir, "narrowed.svemig")
        self.ok("snapshot", "narrowed", snap2)
        r = ctl("--socket", sock, "--json", "restore", snap2)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["vl_bits"], [128, 256])


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
