# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helpers for svemigd's integration tests: real daemons on temporary sockets.

The control API's frames are built and read here byte by byte (protobuf wire
format, proto/api.proto), so a test can also send what a well-behaved client
never would: malformed messages, unknown operations, huge length prefixes.
"""

import array
import atexit
import os
import re
import shutil
import select
import signal
import socket
import struct
import subprocess
import tempfile
import textwrap
import time
import unittest

SVEMIGD = os.environ.get("SVEMIGD", "svemigd")
SVEMIGCTL = os.environ.get("SVEMIGCTL", "svemigctl")

# Sanitizer builds (make test-asan) run several times slower: every bound on a
# hang, here and in the tests, is stretched by this factor.
TIMEOUT_SCALE = int(os.environ.get("SVEMIG_TEST_TIMEOUT_SCALE", "1"))

# Generous: these bound a hang, they are not what a test asserts.
WAIT = 30.0 * TIMEOUT_SCALE

# errno values as Linux numbers them (the daemon sends Linux errnos).
EACCES, EINVAL, EEXIST, ENOENT, ENOSYS = 13, 22, 17, 2, 38
EMSGSIZE, EOPNOTSUPP, EBADMSG, ESHUTDOWN = 90, 95, 74, 108
EBUSY, ECANCELED, EALREADY = 16, 125, 114
EPROTO, EPERM, EUSERS, ETIMEDOUT = 71, 1, 87, 110

# Request.op field numbers
OP_HOST_INFO, OP_GUEST_CREATE, OP_GUEST_LIST, OP_SNAPSHOT, OP_CANCEL = 10, 11, 17, 19, 21
OP_GUEST_START, OP_GUEST_PAUSE, OP_GUEST_RESUME, OP_GUEST_STOP, OP_GUEST_DELETE = 12, 13, 14, 15, 16
OP_GUEST_SHOW, OP_RESTORE, OP_GUEST_RUN = 18, 20, 22
# Response.result field numbers
RESULT_HOST_INFO, RESULT_GUEST, RESULT_GUEST_LIST, RESULT_SNAPSHOT = 10, 11, 12, 13
RESULT_RESTORED, RESULT_CANCEL = 14, 15


# --- protobuf wire format, just enough ---

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num, value):
    return varint(num << 3) + varint(value)


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def request(req_id, op, body=b""):
    """A Request: id and one operation (its field number and encoded body)."""
    return field_varint(1, req_id) + field_bytes(op, body)


def cancel_request(req_id, target_request_id):
    return request(req_id, OP_CANCEL, field_varint(1, target_request_id))


def frame(msg):
    return struct.pack("<I", len(msg)) + msg


def read_varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def parse(buf):
    """Decodes a message into {field: [values]} (bytes for length-delimited fields)."""
    fields = {}
    i = 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 2:
            n, i = read_varint(buf, i)
            v, i = bytes(buf[i:i + n]), i + n
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        fields.setdefault(num, []).append(v)
    return fields


def packed_varints(data):
    out, i = [], 0
    while i < len(data):
        v, i = read_varint(data, i)
        out.append(v)
    return out


class Response:
    def __init__(self, fields):
        self.id = fields.get(1, [0])[0]
        status = parse(fields[2][0]) if 2 in fields else {}
        self.code = status.get(1, [0])[0]
        self.message = status.get(2, [b""])[0].decode()
        self.incompatible = bool(status.get(3, [0])[0])
        self.results = {k: v[0] for k, v in fields.items() if k >= 10}

    def __repr__(self):
        return "Response(id=%d, code=%d, message=%r, results=%r)" % (
            self.id, self.code, self.message, sorted(self.results))


class Progress:
    def __init__(self, fields):
        self.id = fields.get(1, [0])[0]
        self.phase = fields.get(2, [b""])[0].decode()
        self.done = fields.get(3, [0])[0]
        self.total = fields.get(4, [0])[0]
        self.operation = fields.get(5, [0])[0]


def guest_ref(name):
    """A GuestRef body."""
    return field_bytes(1, name.encode())


def guest(data):
    """A Guest message, the fields the tests look at."""
    f = parse(data)
    s = lambda n: f.get(n, [b""])[0].decode()
    return {
        "name": s(1), "state": s(2), "vcpus": f.get(3, [0])[0], "memory_bytes": f.get(4, [0])[0],
        "vl_bits": packed_varints(f[5][0]) if 5 in f else [], "steps": f.get(7, [0])[0],
        "last_snapshot": s(9), "vmm_pid": f.get(12, [0])[0], "reason": s(16), "digest": s(17),
    }


def host_info(data):
    f = parse(data)
    return {
        "backend": f.get(1, [b""])[0].decode(),
        "kernel": f.get(2, [b""])[0].decode(),
        "host_name": f.get(3, [b""])[0].decode(),
        "sve": bool(f.get(4, [0])[0]),
        "vl_bits": packed_varints(f[5][0]) if 5 in f else [],
        "max_vl_bits": f.get(7, [0])[0],
        "cpus": f.get(8, [0])[0],
    }


def xxh32(data, seed):
    """XXH32, as the peer frames' checksum (test-migrate-faults.py checks it against a real frame)."""
    p1, p2, p3, p4, p5, m = 2654435761, 2246822519, 3266489917, 668265263, 374761393, 0xFFFFFFFF

    def rotl(x, r):
        return ((x << r) | (x >> (32 - r))) & m

    n, i = len(data), 0
    if n >= 16:
        v = [(seed + p1 + p2) & m, (seed + p2) & m, seed, (seed - p1) & m]
        while i + 16 <= n:
            for k in range(4):
                v[k] = (rotl((v[k] + struct.unpack_from("<I", data, i + 4 * k)[0] * p2) & m, 13) * p1) & m
            i += 16
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & m
    else:
        h = (seed + p5) & m
    h = (h + n) & m
    while i + 4 <= n:
        h = (rotl((h + struct.unpack_from("<I", data, i)[0] * p3) & m, 17) * p4) & m
        i += 4
    while i < n:
        h = (rotl((h + data[i] * p5) & m, 11) * p1) & m
        i += 1
    h = ((h ^ (h >> 15)) * p2) & m
    h = ((h ^ (h >> 13)) * p3) & m
    return h ^ (h >> 16)


PEER_SEED = 0x50454552  # "PEER"


def peer_frame(msg):
    """A peer-protocol frame (proto/peer.proto): u32 length | u32 XXH32(msg, "PEER") | PeerMessage."""
    return struct.pack("<II", len(msg), xxh32(msg, PEER_SEED)) + msg


def peer_greeting(host_name):
    """What a peer says first: Hello (protocol 1..99) and a HostInfo without SVE."""
    hello = field_varint(1, 99) + field_varint(2, 1) + field_bytes(3, b"0.0.0") + field_bytes(4, host_name.encode())
    info = field_bytes(1, host_name.encode()) + field_bytes(2, b"sim") + field_bytes(5, bytes(64))
    return peer_frame(field_bytes(1, hello)) + peer_frame(field_bytes(2, info))


def free_port():
    """A TCP port nobody listens on now (the kernel's pick; the daemon binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- a client on a raw socket ---

class Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(WAIT)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def send_fd(self, data, fd):
        """Sends data with fd attached to its first byte (SCM_RIGHTS), as svemigctl passes a file."""
        n = self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
        self.sock.sendall(data[n:])

    def call(self, req_id, op, body=b"", fd=None):
        if fd is None:
            self.send(frame(request(req_id, op, body)))
        else:
            self.send_fd(frame(request(req_id, op, body)), fd)
        return self.response()

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("svemigd closed the connection after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return buf

    def message(self):
        (n,) = struct.unpack("<I", self.recv_exact(4))
        f = parse(self.recv_exact(n))
        if 1 in f:
            return Response(parse(f[1][0]))
        return Progress(parse(f[2][0]))

    def response(self):
        while True:
            m = self.message()
            if isinstance(m, Response):
                return m

    def at_eof(self):
        """True when the daemon closed the connection (waits for it)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


# --- sd_notify ---

class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []

    def close(self):
        self.sock.close()

    def drain(self):
        """Reads every datagram already sent; returns them all."""
        while select.select([self.sock], [], [], 0)[0]:
            self.messages.append(self.sock.recv(4096).decode())
        return self.messages

    def wait_for(self, line, timeout=WAIT):
        """Waits until a datagram carries 'line' (e.g. "READY=1"); returns its datagram."""
        deadline = time.monotonic() + timeout
        for m in self.messages:
            if line in m.split("\n"):
                return m
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            m = self.sock.recv(4096).decode()
            self.messages.append(m)
            if line in m.split("\n"):
                return m
        raise AssertionError("no %s from svemigd; got %r" % (line, self.messages))


# --- peer TLS: one CA per run, a certificate per host name ---

MAKE_TEST_CA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "make-test-ca.sh")
_ca_dir = None


def test_ca():
    """The run's CA directory (scripts/make-test-ca.sh), made on first use and removed at exit."""
    global _ca_dir
    if _ca_dir is None:
        _ca_dir = tempfile.mkdtemp(prefix="svemig-test-ca-")
        os.chmod(_ca_dir, 0o755)
        atexit.register(shutil.rmtree, _ca_dir, True)
    return _ca_dir


def host_cert(name):
    """(ca, cert, key) paths for host 'name', signed by the run's CA (made once per name)."""
    d = test_ca()
    cert, key = os.path.join(d, name + ".pem"), os.path.join(d, name + "-key.pem")
    if not os.path.exists(cert):
        subprocess.run(["sh", MAKE_TEST_CA, d, name], check=True)
    return os.path.join(d, "ca.pem"), cert, key


def tls_keys(name):
    """The [cluster] keys that give host 'name' the run's CA and its own certificate."""
    ca, cert, key = host_cert(name)
    return "tls-ca = %s\ntls-cert = %s\ntls-key = %s\n" % (ca, cert, key)


def add_peer_tls(conf):
    """
    Peer TLS is on by default, so a daemon with peers needs certificates: a
    migrate.conf with a [cluster] or [peer] section that says nothing of TLS
    gets the run's CA and a certificate for its host-name, in a [cluster]
    section of its own at the end. Tests that set tls-* or peer-tls
    themselves are left as they are.
    """
    with open(conf) as f:
        text = f.read()
    if re.search(r"^\s*(tls-ca|tls-cert|tls-key|peer-tls)\s*=", text, re.M):
        return
    if not re.search(r"^\s*\[(cluster|peer .*)\]", text, re.M):
        return
    m = re.search(r"^\s*host-name\s*=\s*(\S+)", text, re.M)
    with open(conf, "a") as f:
        f.write("\n[cluster]\n" + tls_keys(m.group(1) if m else socket.gethostname().split(".")[0]))


# --- daemons ---

def write_config(directory, text="", socket_group=None, backend="sim"):
    """A migrate.conf for a daemon confined to 'directory'; returns (path, socket path)."""
    sock = os.path.join(directory, "svemigd.sock")
    group = "%d" % os.getegid() if socket_group is None else socket_group
    conf = textwrap.dedent("""\
        [daemon]
        host-name = testhost
        state-directory = {d}/state
        socket = {s}
        socket-group = {g}
        [hypervisor]
        backend = {b}
        """).format(d=directory, s=sock, g=group, b=backend) + textwrap.dedent(text)
    path = os.path.join(directory, "migrate.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path, sock


class Daemon:
    """svemigd run for real: by hand (binding its socket) or under systemd-socket-activate."""

    def __init__(self, directory, conf, env=None, activate_socket=None, args=()):
        self.log_path = os.path.join(directory, "svemigd.log")
        self.log = open(self.log_path, "w")
        add_peer_tls(conf)
        cmd = [SVEMIGD, "--config", conf, "--foreground", "--verbose"] + list(args)
        full_env = dict(os.environ)
        full_env.update(env or {})
        if activate_socket:
            # systemd-socket-activate passes on only what -E names.
            passed = []
            for k in sorted((env or {}).keys()):
                passed += ["-E", k]
            cmd = ["systemd-socket-activate", "-l", activate_socket] + passed + cmd
        self.proc = subprocess.Popen(cmd, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def wait_for_log(self, text, timeout=WAIT):
        """Waits until the daemon has logged 'text' (it handles clients in no set order)."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError("svemigd never logged %r; its log:\n%s" % (text, self.output()))
            time.sleep(0.02)

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def stop_and_wait_stopped(self):
        """Sends SIGSTOP and returns once the kernel has stopped svemigd (stop_and_wait_stopped())."""
        try:
            stop_and_wait_stopped(self.proc.pid)
        except AssertionError as e:
            raise AssertionError("svemigd: %s\n%s" % (e, self.output()))

    def wait(self, timeout=WAIT):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("svemigd did not exit; its log:\n" + self.output())

    def stop(self):
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        rc = self.wait()
        self.log.close()
        return rc


def stop_and_wait_stopped(pid):
    """Sends SIGSTOP to pid and returns once the kernel has stopped it: the signal takes effect
    when the process is next scheduled, which a loaded machine may delay, and what reaches it
    before then is served."""
    os.kill(pid, signal.SIGSTOP)
    for _ in range(100000):
        with open("/proc/%d/stat" % pid) as f:
            # The state follows the command name, which is in parentheses.
            state = f.read().rpartition(")")[2].split()[0]
        if state in ("T", "t"):
            return
        if state in ("Z", "X"):
            raise AssertionError("process %d exited instead of stopping" % pid)
        time.sleep(0.001)
    raise AssertionError("process %d never stopped after SIGSTOP" % pid)


def wait_for_socket(path, daemon=None, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon and daemon.proc.poll() is not None:
            raise AssertionError("svemigd exited with %d:\n%s" % (daemon.proc.returncode, daemon.output()))
        try:
            c = Client(path)
            c.close()
            return
        except (FileNotFoundError, ConnectionRefusedError):
            time.sleep(0.02)
    raise AssertionError("svemigd never listened on %s" % path)


def ctl(*args, env=None, user=None, timeout=WAIT):
    """Runs svemigctl; user=(uid, gid, [groups]) runs it as someone else via setpriv."""
    cmd = [SVEMIGCTL] + list(args)
    if user:
        uid, gid, groups = user
        cmd = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid] + (
            ["--groups=" + ",".join(map(str, groups))] if groups else ["--clear-groups"]) + cmd
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def vmm_pids(directory, receiving=None):
    """The pids of the svemig-vmm processes whose command line names directory (receiving: only
    those receiving a migration, or only the others)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if not argv[0].endswith(b"svemig-vmm") or not any(directory.encode() in a for a in argv):
            continue
        if receiving is None or (b"--receive-fd" in argv) == receiving:
            yield int(pid)


def kill_vmms_under(directory):
    """Kills every svemig-vmm whose command line names directory: the guests' VMMs a test's
    daemons started, which outlive their daemon by design."""
    for pid in vmm_pids(directory):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# The test running now. meson ends a test that overruns its timeout with SIGTERM, and no
# tearDown runs then: its daemons and their VMMs must not outlive it, spinning on the CPU.
_running_test = None


def _on_sigterm(signum, frame):
    if _running_test:
        for d in _running_test.daemons:
            d.proc.kill()
        kill_vmms_under(_running_test.dir)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


signal.signal(signal.SIGTERM, _on_sigterm)


class DaemonTestCase(unittest.TestCase):
    """A temporary directory (readable by other users) per test."""

    def setUp(self):
        global _running_test
        self.tmp = tempfile.TemporaryDirectory(prefix="svemigd-test-")
        self.dir = self.tmp.name
        os.chmod(self.dir, 0o755)
        self.daemons = []
        _running_test = self

    def kill_vmms(self):
        kill_vmms_under(self.dir)

    def tearDown(self):
        # Every daemon still running must stop cleanly: after whatever the test did to it,
        # SIGTERM still drains and exits 0 (and a sanitizer build reports no leak).
        failures = []
        for d in self.daemons:
            if d.proc.poll() is None:
                d.signal(signal.SIGTERM)
                try:
                    rc = d.proc.wait(WAIT)
                except subprocess.TimeoutExpired:
                    d.proc.kill()
                    rc = d.proc.wait()
                if rc != 0:
                    failures.append("svemigd exited %d at the end of the test:\n%s" % (rc, d.output()))
            d.log.close()
        self.kill_vmms()
        self.tmp.cleanup()
        if failures:
            self.fail("\n".join(failures))

    def start_daemon(self, text="", **kw):
        conf, sock = write_config(self.dir, text, **{k: v for k, v in kw.items() if k in ("socket_group",)})
        d = Daemon(self.dir, conf, **{k: v for k, v in kw.items() if k not in ("socket_group",)})
        self.daemons.append(d)
        if not kw.get("activate_socket"):
            wait_for_socket(sock, d)
        return d, sock
