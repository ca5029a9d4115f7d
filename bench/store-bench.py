#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""store-bench: a full checkpoint of the 1 GiB hpc-memimage guest to S3 and a
restore from it, against what a person would do with the same server by
hand, in the same run.

The server: radosgw on a one-OSD in-memory Ceph cluster on 127.0.0.1, started
here (tests/daemon/storeservers.py, as the tests start it). The guest: 4 vcpus
at 2048-bit SVE (sim backend) whose 1 GiB of RAM holds the image
(bench/migrate-snapshot), restored into one svemigd and left paused.

  checkpoint   svemigctl snapshot GUEST s3://bench/g.svemig: the guest's stream
               (vcpus, LZ4 memory, checksums) multipart-uploaded while written
  baseline     lz4 -1 of the raw image to a file, then curl --aws-sigv4 -T of it
  restore      svemigctl restore s3://bench/g.svemig: header by Range, then the
               stream into a new VMM, every checksum checked, digest verified
  baseline     curl of the .lz4 object, piped into lz4 -d to a file

usage: store-bench.py BUILD_DIR IMAGE WORKDIR [--runs N]
Not a test: it prints figures and ratios, and fails only if something breaks.
"""
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "daemon"))
import storeservers as ss  # noqa: E402

WAIT = 600


def timed(argv, **kw):
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, **kw)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit("store-bench: %s failed: %s%s" % (" ".join(argv), r.stdout, r.stderr))
    return dt, r


def main():
    args = sys.argv[1:]
    runs = 3
    if "--runs" in args:
        i = args.index("--runs")
        runs = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 3:
        raise SystemExit(__doc__)
    build, image, work = args
    os.makedirs(work, exist_ok=True)
    tmp = tempfile.TemporaryDirectory(prefix="store-bench-", dir=work)
    d = tmp.name
    os.chmod(d, 0o755)
    ctl_bin = os.path.join(build, "daemon", "svemigctl")
    snap = os.path.join(d, "g.svemig")
    subprocess.run([os.path.join(build, "bench", "migrate-snapshot"), image, snap, "--vcpus", "4"], check=True)

    rgw = ss.Radosgw(d, bucket="bench")
    daemon = None
    try:
        sock = os.path.join(d, "svemigd.sock")
        creds = os.path.join(d, "credentials")
        with open(creds, "w") as f:
            f.write("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (ss.ACCESS_KEY, ss.SECRET_KEY))
        conf = os.path.join(d, "migrate.conf")
        with open(conf, "w") as f:
            f.write(textwrap.dedent("""\
                [daemon]
                host-name = bench
                state-directory = {d}/state
                socket = {s}
                socket-group = {g}
                [hypervisor]
                backend = sim
                [sim]
                vq-map = 128-2048
                [store]
                s3-endpoint = {ep}
                credentials-file = {c}
                """).format(d=d, s=sock, g=os.getegid(), ep=rgw.endpoint(), c=creds))
        log = open(os.path.join(d, "svemigd.log"), "w")
        daemon = subprocess.Popen([os.path.join(build, "daemon", "svemigd"), "--config", conf, "--foreground"],
                                  stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT
        while not os.path.exists(sock):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("store-bench: svemigd did not start")
            time.sleep(0.05)
        env = dict(os.environ, SVEMIG_CONFIG=conf)
        ctl = lambda *a: timed([ctl_bin, "--socket", sock, "--quiet", *a], env=env)
        ctl("restore", snap, "--name", "g")

        url = rgw.url("g.svemig")
        ck, size = [], 0
        for _ in range(runs):
            dt, r = ctl("--json", "snapshot", "g", url)
            ck.append(dt)
            size = json.loads(r.stdout)["bytes"]
        lz4_file = os.path.join(d, "img.lz4")
        comp, up = [], []
        for _ in range(runs):
            comp.append(timed(["lz4", "-1", "-f", "-q", image, lz4_file])[0])
            up.append(timed(["curl", "-sS", "-f", "--aws-sigv4", "aws:amz:us-east-1:s3", "-u",
                             ss.ACCESS_KEY + ":" + ss.SECRET_KEY, "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                             "-T", lz4_file, rgw.endpoint() + "/bench/img.lz4"])[0])
        rs, base_rs = [], []
        for i in range(runs):
            dt, _ = ctl("restore", url, "--name", "r%d" % i)
            rs.append(dt)
            ctl("guest", "delete", "--force", "r%d" % i)
            out = os.path.join(d, "img.out")
            t0 = time.monotonic()
            subprocess.run("curl -sS -f --aws-sigv4 aws:amz:us-east-1:s3 -u %s:%s -H 'x-amz-content-sha256: "
                           "UNSIGNED-PAYLOAD' %s/bench/img.lz4 | lz4 -d -f -q - %s"
                           % (ss.ACCESS_KEY, ss.SECRET_KEY, rgw.endpoint(), out), shell=True, check=True,
                           timeout=WAIT)
            base_rs.append(time.monotonic() - t0)
            os.unlink(out)
        lz4_size = os.path.getsize(lz4_file)
        best = min
        print("image: %s (%d MiB); stream %.1f MiB, lz4 -1 file %.1f MiB; best of %d" %
              (os.path.basename(image), os.path.getsize(image) >> 20, size / 2**20, lz4_size / 2**20, runs))
        print("checkpoint to S3:  svemig %.2f s   lz4 -1 then curl -T %.2f s (%.2f + %.2f)   ratio %.2f" %
              (best(ck), best(comp) + best(up), best(comp), best(up), best(ck) / (best(comp) + best(up))))
        print("restore from S3:   svemig %.2f s   curl | lz4 -d %.2f s   ratio %.2f" %
              (best(rs), best(base_rs), best(rs) / best(base_rs)))
        print(json.dumps({"checkpoint_s": ck, "lz4_s": comp, "curl_put_s": up, "restore_s": rs,
                          "curl_lz4d_s": base_rs, "stream_bytes": size, "lz4_bytes": lz4_size}))
    finally:
        if daemon and daemon.poll() is None:
            daemon.terminate()
            daemon.wait()
        # The VMMs outlive their daemon by design: end the ones this bench started.
        for pid in os.listdir("/proc"):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"svemig-vmm") and any(d.encode() in a for a in argv):
                os.kill(int(pid), 9)
        rgw.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
