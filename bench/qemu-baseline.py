#!/usr/bin/env python3
"""The QEMU baseline for svemig's benchmarks, measured in the same run.

QEMU 7.2 (qemu-system-aarch64, TCG) holds the benchmark image in guest RAM
(loaded with -device loader at 0x40100000: QEMU puts its DTB in the first MiB
of RAM) and is driven over QMP:

  save     migrate to "exec:cat > FILE" with the guest paused, as `virsh save`
  restore  a new QEMU started with -incoming "exec:cat FILE", -mem-prealloc

  migrate  live migration to a second QEMU over loopback TCP (-incoming,
           -mem-prealloc): paused on one channel, paused with multifd on 2
           channels (plaintext, and with TLS: tls-creds-x509 on both ends,
           each verifying the other), and running (downtime-limit 300 ms)

Prints one JSON object: seconds for each (QEMU's own total-time, and wall
time from the command to completion), the file size, and for migration the
downtime QEMU reports.

usage: qemu-baseline.py IMAGE WORKDIR [--runs N] [--migrate]
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

QEMU = "qemu-system-aarch64"
RAM_MB = 1280
HERE = os.path.dirname(os.path.abspath(__file__))
LOAD_ADDR = 0x40100000


class QMP:
    def __init__(self, path, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.f = self.sock.makefile("rw")
        self.f.readline()  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            msg = json.loads(self.f.readline())
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise RuntimeError(f"{name}: {msg['error']}")

    def wait_migration(self, timeout=300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.cmd("query-migrate")
            if st.get("status") == "completed":
                return st
            if st.get("status") in ("failed", "cancelled"):
                raise RuntimeError(f"migration {st.get('status')}: {st}")
            time.sleep(0.01)
        raise TimeoutError("migration did not complete")

    def close(self):
        self.sock.close()


def start_qemu(workdir, name, extra):
    qmp = os.path.join(workdir, name + ".qmp")
    if os.path.exists(qmp):
        os.unlink(qmp)
    cmd = [QEMU, "-M", "virt", "-cpu", "max", "-accel", "tcg", "-m", str(RAM_MB),
           "-nographic", "-nodefaults", "-S", "-qmp", f"unix:{qmp},server=on,wait=off"] + extra
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    return proc, QMP(qmp)


def stop(proc, qmp):
    try:
        qmp.cmd("quit")
    except Exception:
        pass
    qmp.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def save(image, workdir):
    out = os.path.join(workdir, "qemu-save.bin")
    proc, qmp = start_qemu(workdir, "src", ["-device", f"loader,file={image},addr={LOAD_ADDR:#x}"])
    try:
        # As libvirt's save does: no bandwidth cap (QEMU's default is 128 MiB/s).
        qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
        t0 = time.monotonic()
        qmp.cmd("migrate", uri=f"exec:cat > {out}")
        st = qmp.wait_migration()
        wall = time.monotonic() - t0
    finally:
        stop(proc, qmp)
    return {"total_s": st.get("total-time", 0) / 1000, "wall_s": wall, "file_bytes": os.path.getsize(out)}, out


def restore(saved, workdir):
    proc, qmp = start_qemu(workdir, "dst", ["-mem-prealloc", "-incoming", "defer"])
    try:
        t0 = time.monotonic()
        qmp.cmd("migrate-incoming", uri=f"exec:cat {saved}")
        deadline = time.monotonic() + 300
        while qmp.cmd("query-status")["status"] in ("inmigrate",) and time.monotonic() < deadline:
            time.sleep(0.005)
        wall = time.monotonic() - t0
        status = qmp.cmd("query-status")["status"]
        if status not in ("paused", "postmigrate", "running", "prelaunch"):
            raise RuntimeError(f"restore ended in state {status}")
    finally:
        stop(proc, qmp)
    return {"wall_s": wall}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tls_dirs(workdir):
    """QEMU's tls-creds-x509 directories for the source (client) and destination (server), both
    verifying the other, from a CA made by scripts/make-test-ca.sh (hosts 'msrc' and 'mdst')."""
    ca = os.path.join(workdir, "qemu-tls")
    subprocess.run([os.path.join(HERE, "..", "scripts", "make-test-ca.sh"), ca, "msrc", "mdst"], check=True)
    dirs = {}
    for role, host in (("client", "msrc"), ("server", "mdst")):
        d = os.path.join(ca, role)
        os.makedirs(d, exist_ok=True)
        for src, dst in (("ca.pem", "ca-cert.pem"), (host + ".pem", role + "-cert.pem"),
                         (host + "-key.pem", role + "-key.pem")):
            shutil.copyfile(os.path.join(ca, src), os.path.join(d, dst))
        dirs[role] = d
    return dirs


def migrate(image, workdir, paused, multifd, tls=None):
    """tls: tls_dirs() for QEMU's TLS migration (tls-creds-x509, both ends verified), else plaintext."""
    port = free_port()
    src_extra = ["-device", f"loader,file={image},addr={LOAD_ADDR:#x}"]
    dst_extra = ["-mem-prealloc", "-incoming", "defer"]
    if tls:
        src_extra += ["-object", f"tls-creds-x509,id=tls0,dir={tls['client']},endpoint=client,verify-peer=on"]
        dst_extra += ["-object", f"tls-creds-x509,id=tls0,dir={tls['server']},endpoint=server,verify-peer=on"]
    src, sq = start_qemu(workdir, "msrc", src_extra)
    dst, dq = start_qemu(workdir, "mdst", dst_extra)
    try:
        for q in (sq, dq):
            if multifd:
                q.cmd("migrate-set-capabilities", capabilities=[{"capability": "multifd", "state": True}])
                q.cmd("migrate-set-parameters", **{"multifd-channels": 2})
            if tls:
                q.cmd("migrate-set-parameters", **{"tls-creds": "tls0"})
        if tls:
            sq.cmd("migrate-set-parameters", **{"tls-hostname": "mdst"})
        dq.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
        sq.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40, "downtime-limit": 300})
        if not paused:
            sq.cmd("cont")
        t0 = time.monotonic()
        sq.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        st = sq.wait_migration()
        wall = time.monotonic() - t0
    finally:
        stop(src, sq)
        stop(dst, dq)
    return {"total_s": st.get("total-time", 0) / 1000, "wall_s": wall,
            "downtime_ms": st.get("downtime"), "bytes": st.get("ram", {}).get("transferred")}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    image, workdir = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 1
    if "--migrate" in sys.argv:
        res = {}
        tls = tls_dirs(workdir)
        for name, paused, multifd, creds in (("paused", True, False, None),
                                             ("paused_multifd2", True, True, None),
                                             ("paused_multifd2_tls", True, True, tls),
                                             ("running", False, False, None)):
            tries = [migrate(image, workdir, paused, multifd, creds) for _ in range(runs)]
            res[name] = min(tries, key=lambda r: r["wall_s"])
        print(json.dumps(res))
        return
    best = None
    for _ in range(runs):
        s, saved = save(image, workdir)
        r = restore(saved, workdir)
        os.unlink(saved)
        res = {"save": s, "restore": r}
        if best is None or s["wall_s"] + r["wall_s"] < best["save"]["wall_s"] + best["restore"]["wall_s"]:
            best = res
    print(json.dumps(best))


if __name__ == "__main__":
    main()
