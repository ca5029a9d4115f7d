# SPDX-License-Identifier: LGPL-2.1-or-later
"""Real etcd for the tests: Debian's etcd-server, one member or three, each on
127.0.0.1 with free ports and a data directory of the test's own. Members are
killed and restarted as the fault tests need; the client port speaks etcd's
v3 JSON gateway, which the tests use to look at leases and leaders."""

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

ETCD = os.environ.get("ETCD", "etcd")
# A bound on hangs, not an assertion: etcd elects a leader within a few seconds.
BOUND = 90


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(s):
    return base64.b64encode(s.encode()).decode()


def make_tls(directory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl (PEM paths)."""
    d = os.path.join(directory, "tls")
    os.makedirs(d, exist_ok=True)
    p = {k: os.path.join(d, k + ".pem") for k in ("ca", "ca-key", "server", "server-key", "client", "client-key")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True)
    run("req", "-x509", *ec, "-keyout", p["ca-key"], "-out", p["ca"], "-days", "2", "-subj", "/CN=svemig test CA")
    # etcd's JSON gateway dials the member's own gRPC port with the member's server certificate:
    # under --client-cert-auth that certificate must be good for client authentication too.
    for who, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth"),
                     ("client", "extendedKeyUsage=clientAuth")):
        csr, extfile = os.path.join(d, who + ".csr"), os.path.join(d, who + ".ext")
        with open(extfile, "w") as f:
            f.write(ext + "\n")
        run("req", *ec, "-keyout", p[who + "-key"], "-out", csr, "-subj", "/CN=svemig test " + who)
        run("x509", "-req", "-in", csr, "-CA", p["ca"], "-CAkey", p["ca-key"], "-CAcreateserial",
            "-out", p[who], "-days", "2", "-extfile", extfile)
    return p


class Member:
    def __init__(self, name, directory, scheme="http"):
        self.name = name
        self.scheme = scheme
        self.client_port = free_port()
        self.peer_port = free_port()
        self.data_dir = os.path.join(directory, name + ".etcd")
        self.log_path = os.path.join(directory, name + ".log")
        self.proc = None
        self.id = None

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.client_port)

    @property
    def peer_url(self):
        return "http://127.0.0.1:%d" % self.peer_port

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class Etcd:
    def __init__(self, directory, n=1, tls=None):
        """tls: make_tls()'s paths: clients must then show a certificate the CA signed."""
        if not shutil.which(ETCD):
            raise AssertionError("etcd is not installed: run scripts/install-deps.sh (Debian's etcd-server)")
        self.tls = tls
        self.ctx = None
        if tls:
            self.ctx = ssl.create_default_context(cafile=tls["ca"])
            self.ctx.load_cert_chain(tls["client"], tls["client-key"])
        self.members = [Member("etcd%d" % i, directory, "https" if tls else "http") for i in range(n)]
        self.initial = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)
        for m in self.members:
            self.start(m)
        self.wait_healthy()

    @property
    def endpoints(self):
        return ",".join(m.url for m in self.members)

    def start(self, m):
        log = open(m.log_path, "a")
        m.proc = subprocess.Popen([
            ETCD, "--name", m.name, "--data-dir", m.data_dir,
            "--listen-client-urls", m.url, "--advertise-client-urls", m.url,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", self.initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", "svemig-test"] + ([
            "--cert-file", self.tls["server"], "--key-file", self.tls["server-key"],
            "--trusted-ca-file", self.tls["ca"], "--client-cert-auth"] if self.tls else []),
            stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill(self, m):
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait()

    def stop(self):
        for m in self.members:
            if m.alive():
                self.kill(m)

    def call(self, m, path, body, timeout=5):
        req = urllib.request.Request(m.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout, context=self.ctx) as r:
            return json.loads(r.read())

    def healthy(self, m):
        try:
            with urllib.request.urlopen(m.url + "/health", timeout=5, context=self.ctx) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def wait_healthy(self, members=None):
        """Until every live member (or those given) answers /health with a leader."""
        deadline = time.monotonic() + BOUND
        for m in members or [m for m in self.members if m.alive()]:
            while not self.healthy(m):
                if not m.alive():
                    raise AssertionError("etcd member %s exited:\n%s" % (m.name, open(m.log_path).read()))
                if time.monotonic() > deadline:
                    raise AssertionError("etcd member %s never became healthy:\n%s" % (
                        m.name, open(m.log_path).read()))
                time.sleep(0.05)

    def leader(self):
        """The member that leads now, as a live member's status says."""
        ids = {}
        leader = None
        for m in self.members:
            if m.alive():
                st = self.call(m, "/v3/maintenance/status", {})
                ids[st["header"]["member_id"]] = m
                leader = st.get("leader", leader)
        return ids.get(leader)

    def get(self, key):
        m = next(m for m in self.members if m.alive())
        r = self.call(m, "/v3/kv/range", {"key": b64(key)})
        return r.get("kvs", [None])[0]

    def lease_expired(self, lease_id):
        m = next(m for m in self.members if m.alive())
        r = self.call(m, "/v3/lease/timetolive", {"ID": str(lease_id)})
        return int(r.get("TTL", "0")) <= 0
