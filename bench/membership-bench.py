#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The cluster view at scale: one svemigd watching 5,000 hosts in etcd, beside
the static peer list at 50 peers, measured the same way.

etcd: one etcd member (Debian's etcd-server) on loopback; a watching svemigd
registers itself; a load generator then writes 5,000 host records cloned
from the watcher's own (the real format), one of them limiting the guest set.
static: 50 real svemigd peers (sim backend), one of them limiting, and a
watcher listing all 50 in [peer NAME] sections.

For each it reports:
- change seen: from the moment the limiting host leaves (etcd: its record
  deleted, as a revoked lease does; static: its svemigd stopped) or comes
  back (etcd: its record put again) to the watcher logging its new guest
  set (read from its log as it is written);
- one negotiation: the watcher's own measure of one recompute of the view
  over every host (copy, diff, negotiate), and of the negotiation alone
  (its debug log);
- the watcher's memory: VmRSS and VmHWM from /proc.

  python3 bench/membership-bench.py BUILD_DIR [--hosts 5000] [--peers 50] [--rounds 10]
"""

import argparse
import base64
import json
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "daemon"))
import etcdtest  # noqa: E402

BOUND = 600  # a bound on hangs only


class Watched:
    """A svemigd whose log lines are read as they come, each with the time it was read."""

    def __init__(self, svemigd, conf):
        self.proc = subprocess.Popen([svemigd, "--config", conf, "--foreground", "--verbose"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines = queue.Queue()
        self.all = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, pattern, after=0.0):
        """The first line matching pattern read after 'after': (time, match)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + BOUND
        while True:
            try:
                t, line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise SystemExit("svemigd never logged %r" % pattern)
            self.all.append(line)
            m = rx.search(line)
            if m and t >= after:
                return t, m

    def costs(self, n_hosts):
        """The recompute costs (us) logged over n_hosts hosts so far."""
        rx = re.compile(r"cluster view over %d hosts recomputed in (\d+) us \(negotiation (\d+) us\)" % n_hosts)
        while True:
            try:
                _, line = self.lines.get_nowait()
                self.all.append(line)
            except queue.Empty:
                break
        out = [rx.search(l) for l in self.all]
        return [(int(m.group(1)), int(m.group(2))) for m in out if m]

    def memory(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            st = dict(l.split(":", 1) for l in f if ":" in l)
        return int(st["VmRSS"].split()[0]) / 1024.0, int(st["VmHWM"].split()[0]) / 1024.0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


def conf_text(d, name, vq_map, port, cluster_extra=""):
    return """[daemon]
host-name = {n}
state-directory = {d}/{n}/state
socket = {d}/{n}/svemigd.sock
log-level = debug
[hypervisor]
backend = sim
[sim]
vq-map = {m}
[cluster]
listen = 127.0.0.1:{p}
incoming-reserve = 0
{x}""".format(n=name, d=d, m=vq_map, p=port, x=cluster_extra)


def write_conf(d, name, text):
    os.makedirs(os.path.join(d, name), exist_ok=True)
    path = os.path.join(d, name, "migrate.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def set_text(bits):
    return ",".join(str(b) for b in bits) + " bits"


def summary(xs):
    xs = sorted(xs)
    return "median %.1f, max %.1f (n=%d)" % (statistics.median(xs), xs[-1], len(xs))


def bench_etcd(build, d, n_hosts, rounds):
    os.makedirs(d)
    etcd = etcdtest.Etcd(d, 1)
    m = etcd.members[0]
    prefix = "/bench/"
    conf = write_conf(d, "w", conf_text(d, "w", "128,256,512", etcdtest.free_port(),
                                        "store = etcd\netcd-endpoints = %s\netcd-prefix = %s\n" %
                                        (etcd.endpoints, prefix)))
    w = Watched(os.path.join(build, "daemon", "svemigd"), conf)
    try:
        w.wait_for(r"cluster view is current")
        template = json.loads(base64.b64decode(etcd.get(prefix + "hosts/w")["value"]))
        lease = etcd.call(m, "/v3/lease/grant", {"TTL": "3600"})["ID"]

        def record(i, bits):
            r = dict(template, name="gen-%05d" % i, address="127.0.0.1:%d" % (10000 + i % 50000),
                     instance="gen%d" % i, vl_bits=bits)
            return {"key": etcdtest.b64(prefix + "hosts/gen-%05d" % i),
                    "value": base64.b64encode(json.dumps(r).encode()).decode(), "lease": lease}

        limiting = n_hosts - 1
        t_load = time.monotonic()
        for start in range(0, n_hosts, 128):  # etcd's --max-txn-ops
            ops = [{"request_put": record(i, [128, 256] if i == limiting else [128, 256, 512])}
                   for i in range(start, min(n_hosts, start + 128))]
            etcd.call(m, "/v3/kv/txn", {"success": ops}, timeout=60)
        w.wait_for(r"cluster guest set: 128,256 bits \(max 256\), over %d of %d hosts" % (n_hosts + 1, n_hosts + 1))
        load_s = time.monotonic() - t_load
        rss0 = w.memory()
        leave, join = [], []
        key = etcdtest.b64(prefix + "hosts/gen-%05d" % limiting)
        for _ in range(rounds):
            t0 = time.monotonic()
            etcd.call(m, "/v3/kv/deleterange", {"key": key})
            t1, _ = w.wait_for(r"cluster guest set: 128,256,512 bits", after=t0)
            leave.append((t1 - t0) * 1000)
            t0 = time.monotonic()
            etcd.call(m, "/v3/kv/put", record(limiting, [128, 256]))
            t1, _ = w.wait_for(r"cluster guest set: 128,256 bits", after=t0)
            join.append((t1 - t0) * 1000)
        costs = w.costs(n_hosts + 1)
        return {"hosts": n_hosts + 1, "load_s": load_s, "leave_ms": leave, "join_ms": join,
                "recompute_us": [c[0] for c in costs], "negotiate_us": [c[1] for c in costs],
                "rss_mib": rss0, "rss_end_mib": w.memory()}
    finally:
        w.stop()
        etcd.stop()


def bench_static(build, d, n_peers, rounds):
    os.makedirs(d)
    svemigd = os.path.join(build, "daemon", "svemigd")
    peers = []
    for i in range(n_peers):
        name = "p%02d" % i
        port = etcdtest.free_port()
        conf = write_conf(d, name, conf_text(d, name, "128,256" if i == n_peers - 1 else "128,256,512", port))
        peers.append([name, port, conf, Watched(svemigd, conf)])
    extra = "".join("[peer %s]\naddress = 127.0.0.1:%d\n" % (p[0], p[1]) for p in peers)
    conf = write_conf(d, "w", conf_text(d, "w", "128,256,512", etcdtest.free_port()) + extra)
    w = Watched(svemigd, conf)
    try:
        n = n_peers + 1
        w.wait_for(r"cluster guest set: 128,256 bits \(max 256\), over %d of %d hosts" % (n, n))
        rss0 = w.memory()
        leave, join = [], []
        lim = peers[-1]
        for _ in range(rounds):
            t0 = time.monotonic()
            lim[3].stop()
            t1, _ = w.wait_for(r"cluster guest set: 128,256,512 bits", after=t0)
            leave.append((t1 - t0) * 1000)
            t0 = time.monotonic()
            lim[3] = Watched(svemigd, lim[2])
            t1, _ = w.wait_for(r"cluster guest set: 128,256 bits", after=t0)
            join.append((t1 - t0) * 1000)
        costs = w.costs(n)
        return {"hosts": n, "leave_ms": leave, "join_ms": join,
                "recompute_us": [c[0] for c in costs], "negotiate_us": [c[1] for c in costs],
                "rss_mib": rss0, "rss_end_mib": w.memory()}
    finally:
        w.stop()
        for p in peers:
            p[3].stop()


def report(name, r, join_note):
    print("%s, %d hosts:" % (name, r["hosts"]))
    if "load_s" in r:
        print("  load: %d records written and seen in %.1f s" % (r["hosts"] - 1, r["load_s"]))
    print("  change seen, limiting host leaves (ms): %s" % summary(r["leave_ms"]))
    print("  change seen, limiting host joins (ms)%s: %s" % (join_note, summary(r["join_ms"])))
    print("  one recompute of the view (us): %s" % summary(r["recompute_us"]))
    print("  of which the negotiation (us): %s" % summary(r["negotiate_us"]))
    print("  svemigd memory: VmRSS %.1f MiB, VmHWM %.1f MiB (after the rounds: %.1f, %.1f)" %
          (r["rss_mib"][0], r["rss_mib"][1], r["rss_end_mib"][0], r["rss_end_mib"][1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("--hosts", type=int, default=5000)
    ap.add_argument("--peers", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--only", choices=["etcd", "static"])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="membership-bench-") as d:
        if a.only != "static":
            report("etcd", bench_etcd(a.build, os.path.join(d, "etcd"), a.hosts, a.rounds), "")
        if a.only != "etcd":
            report("static", bench_static(a.build, os.path.join(d, "static"), a.peers, a.rounds),
                   " (includes the peer's svemigd starting)")


if __name__ == "__main__":
    main()
