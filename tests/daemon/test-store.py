#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Remote checkpoints against real servers on 127.0.0.1, started here once
for the whole file: nginx with WebDAV over HTTP and HTTPS, and Ceph's
radosgw (S3, SigV4). A guest is snapshotted to a URL while it runs,
inspected, verified and restored from it bit for bit; and every fault ends
with a clear error naming the URL and the server's answer, the guest still
running, and no object at the final name: a wrong secret, a missing and a
truncated object, a stalled link, a server killed mid-upload and mid-restore,
and a host refused from the header alone (a Range request). A remote
[snapshot] directory takes the checkpoint timer's snapshots, keep N pruning
the server."""

import json
import os
import sys
import tempfile
import time
import unittest

import storeservers as ss
import svemigtest as t
from svemigtest import DaemonTestCase, ctl

SIM = """\
    [sim]
    vq-map = 128-512
    """

servers = {}
tmp = None


def setUpModule():
    global tmp
    tmp = tempfile.TemporaryDirectory(prefix="svemig-store-test-")
    os.chmod(tmp.name, 0o755)
    servers["nginx"] = ss.Nginx(tmp.name)
    servers["rgw"] = ss.Radosgw(tmp.name)


def tearDownModule():
    for s in servers.values():
        s.stop()
    if tmp:
        tmp.cleanup()


# The snapshot's memory phase waits this long per 64 MiB piece, so that a fault lands half-way.
PACE = {"SVEMIG_TEST_SNAPSHOT_PACE_MS": "1500"}


class Store(DaemonTestCase):
    daemon_env = {}
    store_extra = ""

    def setUp(self):
        super().setUp()
        rgw, nginx = servers["rgw"], servers["nginx"]
        self.nginx, self.rgw = nginx, rgw
        self.creds = os.path.join(self.dir, "credentials")
        with open(self.creds, "w") as f:
            f.write("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n"
                    % (ss.ACCESS_KEY, self.secret()))
        store = """\
            [store]
            s3-endpoint = {ep}
            credentials-file = {creds}
            ca-file = {ca}
            part-size = 64K
            parallel-uploads = 3
            retries = 2
            stall-timeout = 3s
            """.format(ep=rgw.endpoint(), creds=self.creds, ca=nginx.cert) + self.store_extra
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        os.environ.clear()
        os.environ.update(env)
        self.daemon, self.sock = self.start_daemon(SIM + store, env=self.daemon_env)
        self.conf = os.path.join(self.dir, "migrate.conf")

    def secret(self):
        return ss.SECRET_KEY

    def ctl(self, *args):
        env = dict(os.environ, SVEMIG_CONFIG=self.conf)
        return ctl("--socket", self.sock, *args, env=env)

    def ok(self, *args):
        r = self.ctl(*args)
        self.assertEqual(r.returncode, 0, "svemigctl %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
        return r

    def json(self, *args):
        return json.loads(self.ok("--json", *args).stdout)

    def show(self, name, *extra):
        return self.json("guest", "show", name, *extra)

    def create(self, name, *extra, memory="32M"):
        return self.json("guest", "create", name, "--vcpus", "2", "--memory", memory, "--dirty-rate", "5", *extra)

    def round_trip(self, url):
        """Snapshot at a fixed step to url, verify and inspect it there, restore it, and compare."""
        self.create("src")
        self.json("guest", "run", "src", "--steps", "2000")
        snap = self.json("snapshot", "src", url)
        self.assertEqual((snap["path"], snap["steps"]), (url, 4000))
        v = self.json("verify", url)
        self.assertTrue(v["verified"], v)
        self.assertEqual(v["bytes"], snap["bytes"])
        self.assertIn("digest", self.ok("inspect", "--summary", url).stdout)
        self.assertEqual(self.show("src")["last_snapshot"], url)
        copy = self.json("restore", url, "--name", "copy")
        self.assertEqual((copy["name"], copy["steps"], copy["restored_from"]), ("copy", 4000, url))
        for name in ("src", "copy"):
            self.json("guest", "run", name, "--steps", "500")
        self.assertEqual(self.show("src", "--digest")["digest"], self.show("copy", "--digest")["digest"])
        return snap

    def assert_fails(self, args, *needles, code=1):
        r = self.ctl(*args)
        self.assertEqual(r.returncode, code, "%s: %s%s" % (args, r.stdout, r.stderr))
        for n in needles:
            self.assertIn(n, r.stderr)
        return r


class Http(Store):
    def test_http_round_trip_leaves_only_the_object(self):
        url = self.nginx.url("ck/src-1.svemig")
        snap = self.round_trip(url)
        # Only the final object: the temporary name it went up under was moved.
        self.assertEqual([f for f in self.nginx.files() if f.startswith("ck/")], ["ck/src-1.svemig"])
        self.assertEqual(os.path.getsize(os.path.join(self.nginx.www, "ck/src-1.svemig")), snap["bytes"])

    def test_https_with_the_configured_ca(self):
        self.round_trip(self.nginx.url("tls/src.svemig", tls=True))

    def test_missing_and_truncated(self):
        url = self.nginx.url("nothing-here.svemig")
        r = self.assert_fails(["restore", url, "--name", "x"], url, "404")
        self.assertEqual(self.json("guest", "list")["guests"], [])
        self.assert_fails(["verify", url], "404")
        # A truncated object: the stream's end is missing, and no guest is left half-restored.
        self.create("src")
        self.json("guest", "run", "src", "--steps", "100")
        whole = self.nginx.url("whole.svemig")
        self.json("snapshot", "src", whole)
        path = os.path.join(self.nginx.www, "whole.svemig")
        with open(path, "rb") as f:
            data = f.read()
        with open(os.path.join(self.nginx.www, "cut.svemig"), "wb") as f:
            f.write(data[: len(data) * 2 // 3])
        cut = self.nginx.url("cut.svemig")
        self.assert_fails(["verify", cut], "truncated", code=5)
        self.assert_fails(["restore", cut, "--name", "cut"], "truncated")
        self.assertEqual([g["name"] for g in self.json("guest", "list")["guests"]], ["src"])

    def test_incompatible_host_refused_from_the_header_alone(self):
        # A stream of a 512-bit guest, judged by a daemon whose host stops at 256 bits.
        self.create("wide", "--vl", "128-512")
        self.json("guest", "run", "wide", "--steps", "2000")
        url = self.nginx.url("wide.svemig")
        snap = self.json("snapshot", "wide", url)
        self.daemon.stop()
        self.daemons.remove(self.daemon)
        self.kill_vmms()
        narrow = SIM.replace("128-512", "128,256") + "[store]\n"
        self.daemon, self.sock = self.start_daemon(narrow)
        with open(self.nginx.access_log) as f:
            before = len(f.readlines())
        r = self.assert_fails(["restore", url, "--name", "w2"], "cannot be restored on this host", code=4)
        with open(self.nginx.access_log) as f:
            lines = [l.split() for l in f.readlines()[before:]]
        # One ranged GET, and far fewer bytes than the stream.
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual((lines[0][0], lines[0][2]), ("GET", "206"))
        self.assertTrue(lines[0][3].startswith("bytes=0-"), lines[0])
        self.assertLess(int(lines[0][-1]), snap["bytes"] // 4)


class RemoteDirectory(Store):
    """[snapshot] directory on a server: what the checkpoint timer's command line writes to."""
    store_extra = ""

    def setUp(self):
        self.store_extra = "[snapshot]\ndirectory = %s\n" % servers["nginx"].url("timer")
        super().setUp()

    def test_timer_command_line_keeps_n_remote(self):
        self.create("ck", "--start")
        paths = []
        for i in range(3):
            r = self.ctl("--quiet", "snapshot", "--keep", "2", "ck")
            self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "", ""))
            paths.append(self.show("ck")["last_snapshot"])
        for p in paths:
            self.assertRegex(p, r"^%s/ck-\d{8}T\d{6}\.\d{3}Z\.svemig$" % self.nginx.url("timer"))
        self.assertEqual([s["path"] for s in self.show("ck")["snapshots"]], paths[1:])
        # The oldest goes on svemigd's pruning thread: wait for it to be gone from the server.
        want = sorted(p.split("/", 3)[3] for p in paths[1:])
        t_files = lambda: [f for f in self.nginx.files() if f.startswith("timer/")]
        deadline = time.monotonic() + t.WAIT
        while t_files() != want and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(t_files(), want)
        self.assertEqual(self.json("verify", paths[2])["verified"], True)


class RemoteChains(Store):
    """keep counts restorable chains: a parent a kept snapshot needs is never removed."""

    def setUp(self):
        self.store_extra = "[snapshot]\ndirectory = %s\n" % servers["nginx"].url("chains")
        super().setUp()

    def files(self):
        return sorted(f for f in self.nginx.files() if f.startswith("chains/"))

    def wait_files(self, want):
        deadline = time.monotonic() + t.WAIT
        while self.files() != want and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.files(), want)

    def test_keep_one_chain(self):
        self.create("ck", "--start")
        key = lambda url: url.split("/", 3)[3]
        snaps = []
        for incremental in (False, True, True):
            args = ["snapshot", "--keep", "1", "ck"] + (["--incremental"] if incremental else [])
            s = self.json(*args)
            self.assertEqual(s["parent"], snaps[-1] if incremental else "")
            self.assertEqual(s["pruned"], [])
            snaps.append(s["path"])
        # One chain of three: all kept, and the last restores through the others.
        self.assertEqual(self.files(), sorted(key(p) for p in snaps))
        v = self.json("verify", snaps[-1])
        self.assertEqual([l["location"] for l in v["chain"]], [snaps[1], snaps[0]])
        # A new full one starts the next chain: with keep 1, the whole first chain goes.
        s = self.json("snapshot", "--keep", "1", "ck")
        self.assertEqual(s["pruned"], snaps)
        self.assertEqual([x["path"] for x in self.show("ck")["snapshots"]], [s["path"]])
        self.wait_files([key(s["path"])])


class S3(Store):
    def test_s3_round_trip_multipart(self):
        url = self.rgw.url("guests/src-1.svemig")
        # Several 64 KiB parts (radosgw here takes parts that small), three in flight.
        snap = self.round_trip(url)
        self.assertGreater(snap["bytes"], 4 * (64 << 10))
        self.assertEqual(self.rgw.status("guests/src-1.svemig"), 200)

    def test_missing_object(self):
        url = self.rgw.url("no/such.svemig")
        self.assert_fails(["restore", url, "--name", "x"], url.replace("s3://", ""), "404", "NoSuchKey")
        self.assertEqual(self.json("guest", "list")["guests"], [])

    def test_truncated_object(self):
        self.create("src")
        self.json("guest", "run", "src", "--steps", "100")
        url = self.rgw.url("t/whole.svemig")
        self.json("snapshot", "src", url)
        whole, cut = os.path.join(self.dir, "whole"), os.path.join(self.dir, "cut")
        self.rgw.get_bytes("t/whole.svemig", whole)
        with open(whole, "rb") as f, open(cut, "wb") as g:
            data = f.read()
            g.write(data[: len(data) * 2 // 3])
        self.rgw.put_bytes("t/cut.svemig", cut)
        self.assert_fails(["verify", self.rgw.url("t/cut.svemig")], "truncated", code=5)
        self.assert_fails(["restore", self.rgw.url("t/cut.svemig"), "--name", "cut"], "truncated")
        self.assertEqual([g["name"] for g in self.json("guest", "list")["guests"]], ["src"])


class Incremental(Store):
    def test_chain_on_s3(self):
        self.create("src", "--start")
        self.json("guest", "pause", "src")
        self.json("guest", "run", "src", "--steps", "2000")
        full_url, inc_url = self.rgw.url("chain/full.svemig"), self.rgw.url("chain/inc.svemig")
        full = self.json("snapshot", "src", full_url)
        self.assertEqual(full["parent"], "")
        self.json("guest", "run", "src", "--steps", "50")
        inc = self.json("snapshot", "--incremental", "src", inc_url)
        # Only the pages dirtied since: 2 vcpus, 5 pages a step, 50 steps, of 8192.
        self.assertEqual(inc["parent"], full_url)
        self.assertLess(inc["bytes"], full["bytes"] // 4)
        shown = self.show("src")
        self.assertEqual((shown["last_snapshot"], shown["snapshots"][-1]["parent"]), (inc_url, full_url))
        v = self.json("verify", inc_url)
        self.assertTrue(v["verified"], v)
        self.assertEqual([l["location"] for l in v["chain"]], [full_url])
        insp = self.json("inspect", "--summary", inc_url)
        self.assertEqual((insp["header"]["parent"], [l["location"] for l in insp["chain"]]), (full_url, [full_url]))
        copy = self.json("restore", inc_url, "--name", "copy")
        self.assertEqual(copy["steps"], inc["steps"])
        for name in ("src", "copy"):
            self.json("guest", "run", name, "--steps", "300")
        self.assertEqual(self.show("src", "--digest")["digest"], self.show("copy", "--digest")["digest"])
        # The restored guest's next incremental one builds on the checkpoint it came from.
        nxt = self.json("snapshot", "--incremental", "copy", self.rgw.url("chain/copy-inc.svemig"))
        self.assertEqual(nxt["parent"], inc_url)
        self.assertTrue(self.json("verify", self.rgw.url("chain/copy-inc.svemig"))["verified"])

        # The chain folded into one full checkpoint, on S3 and in a file of ours: restores the same guest.
        merged_url, merged_file = self.rgw.url("chain/merged.svemig"), os.path.join(self.dir, "merged.svemig")
        for out in (merged_url, merged_file):
            m = self.json("checkpoint", "merge", inc_url, out)
            self.assertEqual(m["path"], out)
            v = self.json("verify", out)
            self.assertEqual((v["verified"], v["parent"], v["chain"]), (True, None, []))
        self.json("restore", merged_url, "--name", "merged")
        self.json("guest", "run", "merged", "--steps", "300")
        self.assertEqual(self.show("merged", "--digest")["digest"], self.show("src", "--digest")["digest"])
        self.json("guest", "delete", "merged", "--force")

        # Another stream at the parent's place breaks the chain: refused by name, nothing restored.
        self.json("snapshot", "src", full_url)
        r = self.assert_fails(["restore", inc_url, "--name", "broken"], "chain is broken", full_url)
        self.assert_fails(["verify", inc_url], "chain is broken", full_url, code=5)
        self.assertEqual(sorted(g["name"] for g in self.json("guest", "list")["guests"]), ["copy", "src"])
        # A missing one too.
        self.rgw.delete("chain/full.svemig")
        self.assert_fails(["restore", inc_url, "--name", "broken"], "chain is broken", "404")

    def test_live_checkpoints_of_a_running_guest(self):
        # A running guest is written while it runs (pre-copy), then paused for its vcpus and the last
        # pages: what is restored is exactly the guest at the steps the checkpoint names. One vcpu, so
        # that a fresh guest run as many steps is the same guest.
        one = ("--vcpus", "1", "--memory", "64M", "--dirty-rate", "20")
        self.json("guest", "create", "live", *one, "--start")
        urls = [self.nginx.url("live/full.svemig"), self.nginx.url("live/inc.svemig")]
        full = self.json("snapshot", "live", urls[0])
        inc = self.json("snapshot", "--incremental", "live", urls[1])
        self.assertEqual((full["parent"], inc["parent"]), ("", urls[0]))
        self.assertEqual((full["live"], inc["live"]), (True, True))
        self.assertEqual(self.show("live")["state"], "running")
        for i, (snap, url) in enumerate(((full, urls[0]), (inc, urls[1]))):
            back = self.json("restore", url, "--name", "back%d" % i)
            self.assertEqual(back["steps"], snap["steps"])
            self.json("guest", "create", "fresh%d" % i, *one)
            self.json("guest", "run", "fresh%d" % i, "--steps", str(snap["steps"]))
            self.assertEqual(self.show("back%d" % i, "--digest")["digest"],
                             self.show("fresh%d" % i, "--digest")["digest"])

    def test_incremental_over_a_file_of_yours_is_full(self):
        # svemig-vmm reads parents only at URLs or in svemigd's snapshot directory: over a file a
        # client named, --incremental writes a full one and says so.
        self.create("src")
        self.json("guest", "run", "src", "--steps", "100")
        mine = os.path.join(self.dir, "mine.svemig")
        self.json("snapshot", "src", mine)
        self.json("guest", "run", "src", "--steps", "10")
        again = self.json("snapshot", "--incremental", "src", os.path.join(self.dir, "mine2.svemig"))
        self.assertEqual(again["parent"], "")


class S3WrongSecret(Store):
    def secret(self):
        return "not-the-secret"

    def test_wrong_secret(self):
        g = self.create("src", "--start")
        url = self.rgw.url("denied.svemig")
        self.assert_fails(["snapshot", "src", url], url, "403", "SignatureDoesNotMatch")
        g2 = self.show("src")
        self.assertEqual((g2["state"], g2["vmm_pid"], g2["last_snapshot"]), ("running", g["vmm_pid"], ""))
        self.assertEqual(self.rgw.status("denied.svemig"), 404)


class Faults(Store):
    daemon_env = PACE

    def test_stalled_link_mid_upload(self):
        proxy = ss.Proxy(self.nginx.port)
        try:
            self.create("big", "--start", memory="256M")
            url = "http://127.0.0.1:%d/stall.svemig" % proxy.port
            c = t.Client(self.sock)
            c.send(t.frame(t.request(1, t.OP_SNAPSHOT, t.field_bytes(1, b"big") + t.field_bytes(2, url.encode()))))
            while True:
                m = c.message()
                if isinstance(m, t.Progress) and m.phase == "memory":
                    break
            proxy.hold()
            while not isinstance(m, t.Response):
                m = c.message()
            self.assertNotEqual(m.code, 0)
            self.assertIn("stalled", m.message)
            self.assertIn("stall.svemig", m.message)
            c.close()
        finally:
            proxy.stop()
        g = self.show("big")
        self.assertEqual((g["state"], g["last_snapshot"]), ("running", ""))
        self.assertNotIn("stall.svemig", self.nginx.files())

    def test_server_killed_mid_upload(self):
        self.create("big", "--start", memory="256M")
        url = self.rgw.url("killed.svemig")
        c = t.Client(self.sock)
        c.send(t.frame(t.request(1, t.OP_SNAPSHOT, t.field_bytes(1, b"big") + t.field_bytes(2, url.encode()))))
        while True:
            m = c.message()
            if isinstance(m, t.Progress) and m.phase == "memory" and m.done > 0:
                break
        self.rgw.kill_rgw()
        try:
            while not isinstance(m, t.Response):
                m = c.message()
            self.assertNotEqual(m.code, 0)
            self.assertIn("killed.svemig", m.message)
        finally:
            c.close()
            self.rgw.start_rgw()
        g = self.show("big")
        self.assertEqual((g["state"], g["last_snapshot"]), ("running", ""))
        self.assertEqual(self.rgw.status("killed.svemig"), 404)

    def test_server_killed_mid_restore(self):
        self.create("src", memory="256M")
        self.json("guest", "run", "src", "--steps", "8000")
        snap = self.json("snapshot", "src", self.nginx.url("r.svemig"))
        self.assertGreater(snap["bytes"], 1 << 20)
        proxy = ss.Proxy(self.nginx.port)
        try:
            url = "http://127.0.0.1:%d/r.svemig" % proxy.port
            # Hold the link half-way through the stream (past the header's Range request), then kill
            # the server behind it and cut the link: the download breaks, its retries find no one.
            proxy.hold_after(512 << 10)
            c = t.Client(self.sock)
            c.send(t.frame(t.request(1, t.OP_RESTORE, t.field_bytes(1, url.encode()) + t.field_bytes(2, b"r2"))))
            self.assertTrue(proxy.holding.wait(t.WAIT), "the restore never reached the hold")
            self.nginx.kill()
            proxy.stop()
            m = None
            while not isinstance(m, t.Response):
                m = c.message()
            self.assertNotEqual(m.code, 0)
            self.assertIn("r.svemig", m.message)
            c.close()
        finally:
            proxy.stop()
            if self.nginx.proc.poll() is not None:
                self.nginx.start()
        self.assertEqual([g["name"] for g in self.json("guest", "list")["guests"]], ["src"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
