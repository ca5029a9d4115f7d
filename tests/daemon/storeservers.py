# SPDX-License-Identifier: LGPL-2.1-or-later
"""Real storage servers for the remote-checkpoint tests, started on 127.0.0.1
by the tests themselves: nginx with WebDAV (HTTP and HTTPS, a self-signed
certificate made here), Ceph's radosgw on a one-OSD in-memory cluster (S3,
SigV4 checked as AWS does), and a TCP proxy that can stall or cut a link."""

import os
import shutil
import socket
import subprocess
import threading
import time
import unittest
import uuid

WAIT = 120
ACCESS_KEY = "SVEMIGTESTKEY"
SECRET_KEY = "svemig-test-secret-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need(*programs):
    """Skips (fails under CI, whose install-deps.sh brings them) when a server is not installed."""
    missing = [p for p in programs if not shutil.which(p) and not os.path.exists(p)]
    if missing:
        msg = "not installed: " + ", ".join(missing) + " (scripts/install-deps.sh installs them)"
        if os.environ.get("CI") == "true":
            raise AssertionError(msg)
        raise unittest.SkipTest(msg)


def wait_port(port, proc, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError("%s exited with %d" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("%s never listened on port %d" % (what, port))


class Nginx:
    """nginx serving DIR/www over HTTP and HTTPS with dav_methods PUT DELETE MOVE."""

    def __init__(self, directory):
        need("/usr/sbin/nginx", "openssl")
        self.dir = os.path.join(directory, "nginx")
        self.www = os.path.join(self.dir, "www")
        os.makedirs(self.www)
        os.makedirs(os.path.join(self.dir, "tmp"))
        # The workers may run as nobody: they write into www.
        for d in (self.dir, self.www, os.path.join(self.dir, "tmp")):
            os.chmod(d, 0o777)
        self.cert = os.path.join(self.dir, "cert.pem")
        key = os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
                        self.cert, "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                        "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        self.port, self.tls_port = free_port(), free_port()
        self.access_log = os.path.join(self.dir, "access.log")
        site = """
            root {www};
            client_max_body_size 0;
            dav_methods PUT DELETE MOVE;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        """.format(www=self.www)
        conf = """
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    log_format ranged '$request_method $uri $status $http_range $bytes_sent';
    access_log {log} ranged;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{ listen 127.0.0.1:{p}; {site} }}
    server {{ listen 127.0.0.1:{tp} ssl; ssl_certificate {cert}; ssl_certificate_key {key}; {site} }}
}}
""".format(d=self.dir, log=self.access_log, p=self.port, tp=self.tls_port, site=site, cert=self.cert, key=key)
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["/usr/sbin/nginx", "-c", self.conf, "-e", os.path.join(self.dir, "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc, "nginx")
        wait_port(self.tls_port, self.proc, "nginx")

    def kill(self):
        """Stops at once: SIGKILL to the master and its workers, by their pids."""
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                workers = [int(p) for p in f.read().split()]
        except OSError:
            workers = []
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in workers:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    def stop(self):
        self.kill()

    def url(self, name, tls=False):
        return ("https://127.0.0.1:%d/%s" % (self.tls_port, name) if tls
                else "http://127.0.0.1:%d/%s" % (self.port, name))

    def files(self):
        out = []
        for d, _, names in os.walk(self.www):
            out += [os.path.relpath(os.path.join(d, n), self.www) for n in names]
        return sorted(out)


class Radosgw:
    """One mon, one memstore OSD and radosgw, no cephx; a user and a bucket made for the tests."""

    def __init__(self, directory, bucket="svemig"):
        need("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph", "curl")
        self.dir = os.path.join(directory, "ceph")
        for sub in ("mon", "osd/ceph-0", "run", "log", "rgw"):
            os.makedirs(os.path.join(self.dir, sub))
        self.mon_port, self.port = free_port(), free_port()
        self.bucket = bucket
        self.procs = {}
        d = self.dir
        self.conf = os.path.join(d, "ceph.conf")
        fsid = str(uuid.uuid4())
        with open(self.conf, "w") as f:
            f.write("""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mp}
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
ms mon client mode = crc
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
ms mon service mode = crc
ms mon cluster mode = crc
run dir = {d}/run
admin socket = {d}/run/$name.asok
log file = {d}/log/$name.log
keyring = {d}/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = 8589934592
mon data = {d}/mon/$cluster-$id
osd data = {d}/osd/$cluster-$id
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:{rp}
rgw data = {d}/rgw
# Parts as small as the tests' 64 KiB (S3 itself takes 5 MiB at least, but the last).
rgw multipart min part size = 65536
""".format(fsid=fsid, mp=self.mon_port, rp=self.port, d=d))
        run = lambda *a: subprocess.run(list(a), check=True, capture_output=True, timeout=WAIT)
        run("ceph-authtool", "--create-keyring", d + "/keyring", "--gen-key", "-n", "mon.", "--cap", "mon", "allow *")
        run("monmaptool", "--create", "--addv", "a", "[v2:127.0.0.1:%d]" % self.mon_port, "--fsid", fsid,
            d + "/monmap")
        run("ceph-mon", "-c", self.conf, "--mkfs", "-i", "a", "--monmap", d + "/monmap")
        self.spawn("mon", ["ceph-mon", "-c", self.conf, "-i", "a", "-f"])
        wait_port(self.mon_port, self.procs["mon"], "ceph-mon")
        osd_id = run("ceph", "-c", self.conf, "osd", "create").stdout.strip()
        run("ceph-osd", "-c", self.conf, "-i", osd_id.decode(), "--mkfs")
        self.spawn("osd", ["ceph-osd", "-c", self.conf, "-i", osd_id.decode(), "-f"])
        self.start_rgw()
        run("radosgw-admin", "-c", self.conf, "user", "create", "--uid=svemig", "--display-name=svemig",
            "--access-key=" + ACCESS_KEY, "--secret-key=" + SECRET_KEY)
        r = self.curl("-X", "PUT", self.endpoint() + "/" + bucket)
        if r.returncode != 0 or not r.stdout.endswith("200"):
            raise AssertionError("cannot create bucket %s: %s %s" % (bucket, r.stdout, r.stderr))

    def spawn(self, name, argv):
        log = open(os.path.join(self.dir, name + ".out"), "w")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def start_rgw(self):
        self.spawn("rgw", ["radosgw", "-c", self.conf, "-n", "client.rgw.a", "-f"])
        wait_port(self.port, self.procs["rgw"], "radosgw")

    def kill_rgw(self):
        p = self.procs["rgw"]
        if p.poll() is None:
            p.kill()
            p.wait()

    def stop(self):
        for name in ("rgw", "osd", "mon"):
            p = self.procs.get(name)
            if p and p.poll() is None:
                p.kill()
                p.wait()

    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    def curl(self, *args, secret=SECRET_KEY):
        """curl's own SigV4, to set up and look at objects beside svemig."""
        return subprocess.run(["curl", "-s", "-o", "/dev/stderr", "-w", "%{http_code}", "--aws-sigv4",
                               "aws:amz:us-east-1:s3", "-u", ACCESS_KEY + ":" + secret, "-H",
                               "x-amz-content-sha256: UNSIGNED-PAYLOAD"] + list(args),
                              capture_output=True, text=True, timeout=WAIT)

    def status(self, key):
        """The HTTP status of a HEAD of the object: 200 there, 404 not."""
        return int(self.curl("-I", "%s/%s/%s" % (self.endpoint(), self.bucket, key)).stdout[-3:])

    def put_bytes(self, key, path):
        r = self.curl("-T", path, "%s/%s/%s" % (self.endpoint(), self.bucket, key))
        assert r.stdout.endswith("200"), r

    def delete(self, key):
        r = self.curl("-X", "DELETE", "%s/%s/%s" % (self.endpoint(), self.bucket, key))
        assert r.stdout.endswith("204"), r

    def get_bytes(self, key, path):
        r = subprocess.run(["curl", "-s", "-o", path, "-w", "%{http_code}", "--aws-sigv4", "aws:amz:us-east-1:s3",
                            "-u", ACCESS_KEY + ":" + SECRET_KEY, "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                            "%s/%s/%s" % (self.endpoint(), self.bucket, key)], capture_output=True, text=True,
                           timeout=WAIT)
        assert r.stdout == "200", r

    def url(self, key):
        return "s3://%s/%s" % (self.bucket, key)


class Proxy:
    """A TCP proxy on 127.0.0.1 to a server. hold(): from then on, bytes stop moving in both
    directions but every connection stays open (a stalled link); cut(): every connection is
    closed at once (a reset)."""

    def __init__(self, target_port):
        self.target = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held = threading.Event()
        self.holding = threading.Event()  # set once a pump has stopped on a hold
        self.hold_at = None
        self.moved = 0
        self.lock = threading.Lock()
        self.conns = []
        self.stopped = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    def pump(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                with self.lock:
                    if self.hold_at is not None and self.moved >= self.hold_at:
                        self.held.set()
                while self.held.is_set() and not self.stopped:
                    self.holding.set()
                    time.sleep(0.05)
                if self.stopped:
                    break
                b.sendall(data)
                with self.lock:
                    self.moved += len(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def hold(self):
        self.held.set()

    def hold_after(self, nbytes):
        """Holds once nbytes have gone through, both ways together."""
        self.hold_at = nbytes

    def stop(self):
        self.stopped = True
        self.held.clear()
        self.sock.close()
        with self.lock:
            for s in self.conns:
                try:
                    s.close()
                except OSError:
                    pass
