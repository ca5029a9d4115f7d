#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""migrate-bench: live migration between two real svemigd daemons on loopback,
against QEMU 7.2 migrating the same image in the same run.

The guest: 64 vcpus at 2048-bit SVE (the sim backend), 1 GiB of RAM holding
the hpc-memimage image. bench/migrate-snapshot builds it as a snapshot with
the library; `svemigctl restore --start` puts it into daemon A; then
`svemigctl migrate` moves it A -> B, B -> A, ... (each a real svemig-vmm
process sending to a new svemig-vmm on the peer), best of N each way:

  idle      every vcpu powered off (sleeping in run, as an idle vcpu in WFI
            sleeps in KVM_RUN): pre-copy, then 64 vcpus of SVE state paused
  paused    the same guest paused (as QEMU's paused runs are): one pass, all
            of it downtime
  dirtying  2 vcpus running the sim workload, writing P pages per step each
            (x28, docs/sim-workload.md); the other 62 idle
  capped    the idle guest over a link capped to --cap-mbps (the tests'
            SVEMIG_TEST_MIGRATE_MAX_BANDWIDTH): adaptive compression picks LZ4

Each runs over peer TLS (the default: a CA and certificates made by
scripts/make-test-ca.sh), and idle and paused also in plaintext
(peer-tls = no) beside it; QEMU's paused multifd migration runs in
plaintext and with tls-creds-x509 (qemu-baseline.py).

The daemons keep an incoming RAM reserve ([cluster] incoming-reserve, RESERVE
below; --reserve 0 turns it off): each destination's guest RAM is faulted in
ahead, before the migration starts, as QEMU's destination started with
-incoming and -mem-prealloc has it. Each migration waits for the
destination's reserve to be ready first, as QEMU's waits for its destination
to be started.

usage: migrate-bench.py BUILD_DIR IMAGE WORKDIR [--runs N] [--no-qemu] [--dirty-pages P]
                        [--cap-mbps M] [--reserve MIB]

Not a test: it prints figures and ratios, and fails only if something breaks.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VL_BITS = ",".join(str(128 * vq) for vq in range(1, 17))  # the sim host: 128..2048 bits
WAIT = 120
RESERVE_MIB = 1280  # the guest's 1 GiB and room to spare
RESERVE_READY = "the incoming RAM reserve is ready"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tls_keys(root, name, tls):
    """[cluster] keys for peer TLS (a CA under root, made once, and name's certificate), or peer-tls = no."""
    if not tls:
        return "peer-tls = no\n"
    ca = os.path.join(root, "pki")
    if not os.path.exists(os.path.join(ca, name + ".pem")):
        subprocess.run(["sh", os.path.join(HERE, "..", "scripts", "make-test-ca.sh"), ca, name], check=True)
    return f"tls-ca = {ca}/ca.pem\ntls-cert = {ca}/{name}.pem\ntls-key = {ca}/{name}-key.pem\n"


class Daemon:
    def __init__(self, build, root, name, port, peer, peer_port, env=None, reserve_mib=0, tls=True):
        self.name = name
        self.reserve_mib = reserve_mib
        self.reserves_taken = 0
        self.dir = os.path.join(root, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.sock = os.path.join(self.dir, "svemigd.sock")
        self.ctl_path = os.path.join(build, "daemon", "svemigctl")
        conf = os.path.join(self.dir, "migrate.conf")
        with open(conf, "w") as f:
            f.write(textwrap.dedent(f"""\
                [daemon]
                host-name = {name}
                state-directory = {self.dir}/state
                socket = {self.sock}
                socket-group = {os.getegid()}
                [hypervisor]
                backend = sim
                [sim]
                vq-map = {VL_BITS}
                [cluster]
                listen = 127.0.0.1:{port}
                refresh-interval = 500ms
                incoming-reserve = {reserve_mib}M
                {{tls}}[peer {peer}]
                address = 127.0.0.1:{peer_port}
                """).replace("{tls}", tls_keys(root, name, tls)))
        full_env = dict(os.environ)
        full_env["SVEMIG_VMM"] = os.path.join(build, "daemon", "svemig-vmm")
        full_env.update(env or {})
        self.log = open(os.path.join(self.dir, "svemigd.log"), "w")
        self.proc = subprocess.Popen([os.path.join(build, "daemon", "svemigd"), "--config", conf, "--foreground"],
                                     env=full_env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"migrate-bench: svemigd {name} did not start; see {self.log.name}")
            time.sleep(0.02)

    def ctl(self, *args, check=True):
        r = subprocess.run([self.ctl_path, "--socket", self.sock, "--json"] + list(args), capture_output=True,
                           text=True, timeout=WAIT)
        if check and r.returncode != 0:
            sys.exit(f"migrate-bench: svemigctl {' '.join(args)} on {self.name} failed: {r.stderr}{r.stdout}")
        return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else None

    def wait_peer_up(self, peer):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            v = self.ctl("cluster", check=False)
            if v and any(h["name"] == peer and h["state"] == "up" for h in v["hosts"]):
                return
            time.sleep(0.1)
        sys.exit(f"migrate-bench: {self.name} never saw {peer} up")

    def wait_reserve(self):
        """Until this daemon has a reserve ready (one per guest it took): its refill is over."""
        if not self.reserve_mib:
            return
        deadline = time.monotonic() + WAIT
        while True:
            with open(self.log.name) as f:
                if f.read().count(RESERVE_READY) > self.reserves_taken:
                    break
            if time.monotonic() > deadline:
                sys.exit(f"migrate-bench: {self.name}'s incoming RAM reserve was never ready; see {self.log.name}")
            time.sleep(0.05)

    def wait_state(self, guest, state="running"):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            g = self.ctl("guest", "show", guest, check=False)
            if g and g["state"] == state:
                return g
            time.sleep(0.05)
        sys.exit(f"migrate-bench: guest {guest} never was {state} on {self.name}")

    def stop(self):
        for g in (self.ctl("guest", "list", check=False) or {}).get("guests", []):
            self.ctl("guest", "stop", g["name"], check=False)
            self.ctl("guest", "delete", g["name"], check=False)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def pair(build, root, env=None, reserve_mib=0, tls=True):
    pa, pb = free_port(), free_port()
    a = Daemon(build, root, "a", pa, "b", pb, env, reserve_mib, tls)
    b = Daemon(build, root, "b", pb, "a", pa, env, reserve_mib, tls)
    a.wait_peer_up("b")
    b.wait_peer_up("a")
    return a, b


def migrations(build, root, snapshot, runs, env=None, reserve_mib=0, paused=False, tls=True):
    """Restores the snapshot into A (running, or paused), then migrates it A->B->A... runs times, over peer TLS
    or in plaintext; returns the reports."""
    a, b = pair(build, root, env, reserve_mib, tls)
    reps = []
    state = "paused" if paused else "running"
    try:
        a.ctl("restore", snapshot, "--name", "g", *([] if paused else ["--start"]))
        a.wait_state("g", state)
        src, dst = a, b
        for _ in range(runs):
            time.sleep(0.5)  # the guest runs a while on its new host first
            # Both: the source's refill, after it last took a guest in, would take CPU from the migration.
            src.wait_reserve()
            dst.wait_reserve()
            rep = src.ctl("migrate", "g", dst.name)
            dst.wait_state("g", state)
            if dst.reserve_mib:
                dst.reserves_taken += 1
            reps.append(rep)
            src, dst = dst, src
    finally:
        a.stop()
        b.stop()
    return reps


def best(reps):
    return min(reps, key=lambda r: r["total_ns"])


def row(name, r):
    t = r["total_ns"] / 1e9
    print(f"{name:<30} {t:8.3f} {r['downtime_ns'] / 1e6:9.2f} {r['bytes_sent'] / 1e6 / t:9.0f} "
          f"{r['bytes_sent'] / 1e6:9.0f} {r['rounds']:6d}  {r['compression'] or 'none':<5} "
          f"{r['link_bps'] / 1e6:8.0f}")


def main():
    args = sys.argv[1:]
    if len(args) < 3:
        sys.exit(__doc__)
    build, image, work = (os.path.abspath(a) for a in args[:3])

    def opt(name, default):
        return type(default)(args[args.index(name) + 1]) if name in args else default

    runs = opt("--runs", 3)
    dirty_pages = opt("--dirty-pages", 4)
    cap_mbps = opt("--cap-mbps", 200)
    reserve = opt("--reserve", RESERVE_MIB)
    qemu = "--no-qemu" not in args and shutil.which("qemu-system-aarch64")
    root = os.path.join(work, "migrate")
    os.makedirs(root, exist_ok=True)
    size = os.path.getsize(image)

    snaps = {}
    for name, extra in (("idle", ["--active", "0"]),
                        ("dirtying", ["--active", "2", "--dirty-pages", str(dirty_pages)])):
        snaps[name] = os.path.join(root, name + ".svemig")
        subprocess.run([os.path.join(build, "bench", "migrate-snapshot"), image, snaps[name]] + extra, check=True)

    res = {
        "idle": best(migrations(build, root, snaps["idle"], runs, reserve_mib=reserve)),
        "paused": best(migrations(build, root, snaps["idle"], runs, reserve_mib=reserve, paused=True)),
        "idle_plain": best(migrations(build, root, snaps["idle"], runs, reserve_mib=reserve, tls=False)),
        "paused_plain": best(migrations(build, root, snaps["idle"], runs, reserve_mib=reserve, paused=True,
                                        tls=False)),
        "dirtying": best(migrations(build, root, snaps["dirtying"], runs, reserve_mib=reserve)),
        "capped": best(migrations(build, root, snaps["idle"], 1,
                                  {"SVEMIG_TEST_MIGRATE_MAX_BANDWIDTH": str(cap_mbps * 1000000)}, reserve)),
    }
    q = None
    if qemu:
        out = subprocess.run([sys.executable, os.path.join(HERE, "qemu-baseline.py"), image, work, "--migrate",
                              "--runs", str(runs)], capture_output=True, text=True, check=True).stdout
        q = json.loads(out)
    for f in snaps.values():
        os.unlink(f)

    print(f"guest: 64 vcpus at 2048-bit SVE, {size >> 20} MiB (hpc-memimage), sim backend, two svemigd on "
          f"loopback; best of {runs}; {os.cpu_count()} CPUs")
    if reserve:
        print(f"destination RAM reserved ahead: incoming-reserve = {reserve}M, faulted in before each migration "
              f"starts, as QEMU's -incoming -mem-prealloc destination is")
    else:
        print("destination RAM not reserved (--reserve 0): each destination faults its guest's RAM in during "
              "the migration")
    print(f"{'':<30} {'total s':>8} {'down ms':>9} {'MB/s':>9} {'wire MB':>9} {'passes':>6}  {'comp':<5} "
          f"{'link MB/s':>8}")
    row("svemig idle, TLS", res["idle"])
    row("svemig paused, TLS", res["paused"])
    row("svemig idle, plaintext", res["idle_plain"])
    row("svemig paused, plaintext", res["paused_plain"])
    row(f"svemig dirtying, TLS ({dirty_pages} p/step x2)", res["dirtying"])
    row(f"svemig idle, TLS, link {cap_mbps} MB/s", res["capped"])
    if q:
        for name, key in (("QEMU paused, 1 channel", "paused"), ("QEMU paused, multifd 2", "paused_multifd2"),
                          ("QEMU paused, multifd 2, TLS", "paused_multifd2_tls"), ("QEMU running", "running")):
            r = q[key]
            print(f"{name:<30} {r['total_s']:8.3f} {r['downtime_ms'] or 0:9.2f} "
                  f"{(r['bytes'] or 0) / 1e6 / max(r['total_s'], 1e-9):9.0f} {(r['bytes'] or 0) / 1e6:9.0f}")
    print("\ntargets:")
    idle_t = res["idle"]["total_ns"] / 1e9
    paused_t = res["paused"]["total_ns"] / 1e9
    print(f"  TLS vs plaintext, svemig idle   {idle_t / (res['idle_plain']['total_ns'] / 1e9):5.2f}x its time")
    print(f"  TLS vs plaintext, svemig paused {paused_t / (res['paused_plain']['total_ns'] / 1e9):5.2f}x its time")
    if q:
        mfd = q["paused_multifd2"]["total_s"]
        mfd_tls = q["paused_multifd2_tls"]["total_s"]
        print(f"  paused TLS vs QEMU multifd TLS  {mfd_tls / paused_t:5.2f}x  (target > 1x; both paused, both "
              f"TLS)      {'met' if paused_t < mfd_tls else 'MISSED'}")
        print(f"  idle TLS vs QEMU multifd TLS    {mfd_tls / idle_t:5.2f}x  (target > 1x)      "
              f"{'met' if idle_t < mfd_tls else 'MISSED'}")
        print(f"  QEMU multifd TLS vs plaintext   {mfd_tls / mfd:5.2f}x its time")
        plain_t = res["idle_plain"]["total_ns"] / 1e9
        print(f"  idle plaintext vs QEMU multifd  {mfd / plain_t:5.2f}x  (target > 1x)      "
              f"{'met' if plain_t < mfd else 'MISSED'}")
        print(f"  idle plaintext vs QEMU 1 chan.  {q['paused']['total_s'] / plain_t:5.2f}x")
        print(f"  paused plaintext vs QEMU mfd    "
              f"{mfd / (res['paused_plain']['total_ns'] / 1e9):5.2f}x  (both guests paused: like for like)")
        run_t = res["dirtying"]["total_ns"] / 1e9
        print(f"  dirtying TLS vs QEMU running    {q['running']['total_s'] / run_t:5.2f}x (QEMU in plaintext)")
    down = res["idle"]["downtime_ns"] / 1e6
    print(f"  idle downtime                   {down:6.2f} ms (target <= 10 ms) {'met' if down <= 10 else 'MISSED'}")
    ok = res["capped"]["compression"] == "lz4"
    print(f"  adaptive compression            {cap_mbps} MB/s link: {res['capped']['compression']} (target lz4) "
          f"{'met' if ok else 'MISSED'}; loopback: {res['idle']['compression']} (each way tried on a "
          f"piece, the faster kept)")

if __name__ == "__main__":
    main()
