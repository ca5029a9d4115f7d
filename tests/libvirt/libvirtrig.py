# SPDX-License-Identifier: LGPL-2.1-or-later
"""Real libvirtd for svemig's libvirt tests, one per simulated host.

Each host is a directory: a svemigd (sim backend, the host's VQ map) and a
libvirtd run as root without systemd in a mount namespace of its own, with
private copies bind-mounted over /etc/libvirt, /var, /run, /etc/passwd and
/etc/group (the QEMU driver looks up a libvirt-qemu user even when told to
run QEMU as root). The system's own /etc, /var and /run are never touched.
libvirtd's socket lives in the host's directory, outside the namespace's
private mounts, so virsh and the tests reach it with
qemu+unix:///system?socket=DIR/sock/libvirt-sock. svemig's hook is installed
in the private /etc/libvirt/hooks/qemu.d/ as a wrapper naming the host's
svemigd (libvirtd gives hooks a clean environment).

The guest is a real aarch64 TCG domain: the Debian arm64 kernel the arm64
rig fetches (tests/arm64/fetch-host.sh) and a busybox initramfs whose /init
prints the SVE lengths it sees and then a tick every second.
"""

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import textwrap
import time
import uuid

import svemigtest as t

HOOK = os.environ.get("SVEMIG_LIBVIRT_HOOK", "svemig-libvirt-hook")
LIBVIRTD = "/usr/sbin/libvirtd"
WAIT = 600.0  # bounds a hang on a loaded machine; no assertion is about time


def qemu_conf():
    return textwrap.dedent("""\
        user = "root"
        group = "root"
        dynamic_ownership = 0
        remember_owner = 0
        security_driver = "none"
        cgroup_controllers = [ ]
        namespaces = [ ]
        stdio_handler = "file"
        """)


class LibvirtHost:
    """A simulated host: svemigd (sim, vq_map) beside an isolated libvirtd."""

    def __init__(self, base, name, vq_map, libvirt_conf="", cache_from=None):
        self.name = name
        self.dir = os.path.join(base, name)
        os.makedirs(self.dir)
        self.sock_dir = os.path.join(self.dir, "sock")
        self.uri = "qemu+unix:///system?socket=%s/libvirt-sock" % self.sock_dir
        self.vq_map = vq_map
        self.libvirt_conf = libvirt_conf
        self.svemigd = None
        self.svemig_sock = os.path.join(self.dir, "svemigd.sock")
        self.conf_path = os.path.join(self.dir, "migrate.conf")
        self.libvirtd = None
        self.cache_from = cache_from
        self._write_svemigd_conf()
        self._prepare_tree()

    # --- svemigd ---

    def _write_svemigd_conf(self, libvirt_keys=""):
        with open(self.conf_path, "w") as f:
            f.write(textwrap.dedent("""\
                [daemon]
                host-name = {n}
                state-directory = {d}/state
                socket = {s}
                socket-group = 0
                [hypervisor]
                backend = sim
                [sim]
                vq-map = {m}
                """).format(n=self.name, d=self.dir, s=self.svemig_sock, m=self.vq_map))
            f.write(textwrap.dedent(self.libvirt_conf))
            # svemigd follows this host's libvirtd.
            f.write("[libvirt]\nuri = %s\n%s" % (self.uri, libvirt_keys))
        # The hook reads this file too, even while svemigd is down: it needs the peers' TLS keys.
        t.add_peer_tls(self.conf_path)

    def start_svemigd(self, libvirt_keys=""):
        self._write_svemigd_conf(libvirt_keys)
        self.svemigd = t.Daemon(self.dir, self.conf_path)
        t.wait_for_socket(self.svemig_sock, self.svemigd)
        return self.svemigd

    def stop_svemigd(self):
        if self.svemigd:
            self.svemigd.stop()
            self.svemigd = None

    def ctl(self, *args):
        env = dict(os.environ, SVEMIG_SOCKET=self.svemig_sock)
        return t.ctl(*args, env=env)

    # --- libvirtd ---

    def _prepare_tree(self):
        d = self.dir
        etc = os.path.join(d, "etc-libvirt")
        os.makedirs(os.path.join(etc, "hooks", "qemu.d"))
        os.makedirs(self.sock_dir)
        for sub in ("lib/libvirt/qemu", "log/libvirt/qemu", "cache/libvirt/qemu", "tmp"):
            os.makedirs(os.path.join(d, "var", sub))
        os.symlink("/run", os.path.join(d, "var", "run"))
        os.symlink("/run/lock", os.path.join(d, "var", "lock"))
        os.makedirs(os.path.join(d, "run", "lock"))
        with open(os.path.join(etc, "libvirtd.conf"), "w") as f:
            f.write('unix_sock_dir = "%s"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n'
                    'host_uuid = "%s"\n' % (self.sock_dir, uuid.uuid4()))
        with open(os.path.join(etc, "qemu.conf"), "w") as f:
            f.write(qemu_conf())
        with open(os.path.join(etc, "libvirt.conf"), "w") as f:
            f.write("")
        # The hook, as installed: libvirtd runs every executable in qemu.d.
        hook = os.path.join(etc, "hooks", "qemu.d", "svemig")
        with open(hook, "w") as f:
            f.write("#!/bin/sh\nSVEMIG_SOCKET=%s SVEMIG_CONFIG=%s exec %s \"$@\"\n" %
                    (self.svemig_sock, self.conf_path, os.path.abspath(shutil.which(HOOK) or HOOK)))
        os.chmod(hook, 0o755)
        with open("/etc/passwd") as src, open(os.path.join(d, "passwd"), "w") as dst:
            dst.write(src.read() + "libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin\n")
        with open("/etc/group") as src, open(os.path.join(d, "group"), "w") as dst:
            dst.write(src.read() + "libvirt-qemu:x:64055:\nkvm:x:64056:\n")
        if self.cache_from:
            # QEMU's probed capabilities: copied, they spare the next libvirtd the probe.
            src = os.path.join(self.cache_from, "var", "cache", "libvirt", "qemu", "capabilities")
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(d, "var", "cache", "libvirt", "qemu", "capabilities"))

    def start_libvirtd(self):
        d = self.dir
        script = textwrap.dedent("""\
            set -e
            mount --make-rprivate /
            mount --bind {d}/etc-libvirt /etc/libvirt
            mount --bind {d}/var /var
            mount --bind {d}/run /run
            mount --bind {d}/passwd /etc/passwd
            mount --bind {d}/group /etc/group
            exec {libvirtd} -f /etc/libvirt/libvirtd.conf
            """).format(d=d, libvirtd=LIBVIRTD)
        self.libvirtd_log = open(os.path.join(d, "libvirtd.out"), "w")
        self.libvirtd = subprocess.Popen(["unshare", "--mount", "sh", "-c", script],
                                         stdout=self.libvirtd_log, stderr=subprocess.STDOUT,
                                         # A plain PATH: libvirt shows it in every hook failure.
                                         env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                              "LIBVIRT_LOG_OUTPUTS": "3:stderr"})
        sock = os.path.join(self.sock_dir, "libvirt-sock")
        deadline = time.monotonic() + WAIT
        while True:
            if self.libvirtd.poll() is not None:
                raise AssertionError("libvirtd exited %d:\n%s" % (self.libvirtd.returncode, self.libvirtd_out()))
            if os.path.exists(sock) and self.virsh("list", "--all", check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError("libvirtd never answered:\n" + self.libvirtd_out())
            time.sleep(0.1)

    def libvirtd_out(self):
        self.libvirtd_log.flush()
        with open(os.path.join(self.dir, "libvirtd.out")) as f:
            return f.read()

    def stop_libvirtd(self):
        if self.libvirtd and self.libvirtd.poll() is None:
            # Guests first: QEMU processes outlive libvirtd by design.
            for name in self.virsh("list", "--name", check=False).stdout.split():
                self.virsh("destroy", name, check=False)
            self.libvirtd.terminate()
            try:
                self.libvirtd.wait(60)
            except subprocess.TimeoutExpired:
                self.libvirtd.kill()
                self.libvirtd.wait()
        if self.libvirtd:
            self.libvirtd_log.close()
        self.libvirtd = None

    def virsh(self, *args, check=True, stdin=None):
        r = subprocess.run(["virsh", "-q", "-c", self.uri] + list(args), capture_output=True, text=True,
                           input=stdin, timeout=WAIT)
        if check and r.returncode != 0:
            raise AssertionError("virsh %s on %s failed (%d): %s%s" % (" ".join(args), self.name, r.returncode,
                                                                        r.stdout, r.stderr))
        return r

    def domstate(self, dom):
        r = self.virsh("domstate", dom, check=False)
        return r.stdout.strip() if r.returncode == 0 else None

    def define(self, work, name, kernel, initrd, cpu=""):
        """Defines a domain (domain_xml) whose serial console goes to WORK/NAME.console; returns that path."""
        console = os.path.join(work, name + ".console")
        path = os.path.join(work, name + ".xml")
        with open(path, "w") as f:
            f.write(domain_xml(name, kernel, initrd, console, cpu))
        self.virsh("define", path)
        return console

    def qemu_cmdline(self, dom):
        with open(os.path.join(self.dir, "var", "log", "libvirt", "qemu", dom + ".log")) as f:
            return f.read()

    def stop(self):
        self.stop_libvirtd()
        self.stop_svemigd()


def build_initramfs(out_dir, busybox, probe):
    """A gzipped newc cpio: busybox, the probe and an /init that prints what the guest sees."""
    root = os.path.join(out_dir, "initramfs")
    os.makedirs(os.path.join(root, "bin"))
    for sub in ("proc", "sys", "dev"):
        os.makedirs(os.path.join(root, sub))
    shutil.copy(busybox, os.path.join(root, "bin", "busybox"))
    shutil.copy(probe, os.path.join(root, "bin", "vl-probe"))
    with open(os.path.join(root, "init"), "w") as f:
        f.write(textwrap.dedent("""\
            #!/bin/busybox sh
            /bin/busybox mount -t proc proc /proc
            echo "vl-init: sve_default_vector_length $(/bin/busybox cat /proc/sys/abi/sve_default_vector_length 2>&1)"
            /bin/vl-probe
            n=0
            while :; do
                n=$((n + 1))
                echo "vl-init: tick $n"
                /bin/busybox sleep 1
            done
            """))
    os.chmod(os.path.join(root, "init"), 0o755)
    out = os.path.join(out_dir, "initrd.gz")
    subprocess.run("cd %s && find . | cpio -o -H newc --quiet | gzip -1 > %s" % (root, out), shell=True,
                   check=True)
    return out


def domain_xml(name, kernel, initrd, console, cpu=""):
    return textwrap.dedent("""\
        <domain type='qemu'>
          <name>{name}</name>
          <memory unit='MiB'>256</memory>
          <vcpu>1</vcpu>
          <os>
            <type arch='aarch64' machine='virt'>hvm</type>
            <kernel>{kernel}</kernel>
            <initrd>{initrd}</initrd>
            <cmdline>console=ttyAMA0 loglevel=3 rdinit=/init</cmdline>
          </os>
          {cpu}
          <on_poweroff>destroy</on_poweroff>
          <devices>
            <emulator>/usr/bin/qemu-system-aarch64</emulator>
            <controller type='usb' model='none'/>
            <serial type='file'>
              <source path='{console}' append='on'/>
            </serial>
            <memballoon model='none'/>
          </devices>
        </domain>
        """).format(name=name, kernel=kernel, initrd=initrd, console=console, cpu=cpu)


def sve_cpu(bits_required, bits_disabled=()):
    feats = ["<feature policy='require' name='sve'/>"]
    feats += ["<feature policy='require' name='sve%d'/>" % b for b in bits_required]
    feats += ["<feature policy='disable' name='sve%d'/>" % b for b in bits_disabled]
    return ("<cpu mode='custom' match='exact'><model fallback='forbid'>max</model>%s</cpu>" %
            "".join(feats))


def wait_for(what, predicate, timeout=WAIT, on_fail=lambda: ""):
    """Polls predicate() until it is true: waits for a state libvirt or the guest reports."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("never saw %s\n%s" % (what, on_fail()))
        time.sleep(0.2)


# --- what the tests and `make demo` (scripts/demo-libvirt.py) both set up ---

CLUSTER = [128, 256]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def guest_parts(src, work):
    """The Debian arm64 kernel and busybox (the arm64 rig's cache, fetched once by
    tests/arm64/fetch-host.sh), the probe cross-built, the initramfs: (kernel, initrd)."""
    cache = os.path.join(src, "tests", "arm64", "cache")
    out = subprocess.run(["sh", os.path.join(src, "tests", "arm64", "fetch-host.sh"), cache],
                         capture_output=True, text=True, check=True).stdout
    parts = dict(line.split(" ", 1) for line in out.splitlines())
    probe = os.path.join(work, "vl-probe")
    subprocess.run(["aarch64-linux-gnu-gcc", "-static", "-O2", "-o", probe,
                    os.path.join(src, "tests", "libvirt", "vl-probe.c")], check=True)
    kernel = os.path.join(work, "vmlinuz")
    shutil.copy(parts["kernel"] if os.path.isabs(parts["kernel"]) else os.path.join(src, parts["kernel"]), kernel)
    busybox = parts["busybox"] if os.path.isabs(parts["busybox"]) else os.path.join(src, parts["busybox"])
    return kernel, build_initramfs(work, busybox, probe)


def static_peers(name, port, peer, peer_port):
    """A host's [cluster] with the other as its static peer."""
    return ("[cluster]\nlisten = 127.0.0.1:%d\nrefresh-interval = 200ms\n[peer %s]\naddress = 127.0.0.1:%d\n" %
            (port, peer, peer_port))


def start_two_hosts(work, started, cluster=static_peers):
    """hosta {128,256,512} and hostb {128,256}, each a svemigd and a libvirtd, in one cluster
    (cluster(name, port, peer, peer_port) gives each its [cluster]: static peers by default),
    started and agreed on the cluster's set {128,256}: (hosta, hostb).
    Each host goes into the list 'started' as soon as it exists: the caller stops them
    (LibvirtHost.stop), even when this fails half way."""
    pa, pb = free_port(), free_port()
    a = LibvirtHost(work, "hosta", "128,256,512", libvirt_conf=cluster("hosta", pa, "hostb", pb))
    started.append(a)
    a.start_svemigd()
    a.start_libvirtd()
    a.virsh("capabilities")  # probes QEMU once; hostb copies the cache
    b = LibvirtHost(work, "hostb", "128,256", cache_from=a.dir, libvirt_conf=cluster("hostb", pb, "hosta", pa))
    started.append(b)
    b.start_svemigd()
    b.start_libvirtd()
    for h in (a, b):
        wait_for("%s's cluster set %s" % (h.name, CLUSTER),
                 lambda h=h: json.loads(h.ctl("--json", "cluster").stdout or "{}").get("guest_bits") == CLUSTER)
    return a, b


def console_text(console):
    try:
        with open(console) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_console(console, pattern):
    """Waits for the guest to print a line matching pattern on its serial console; returns the match."""
    return wait_for("%r on %s" % (pattern, console), lambda: re.search(pattern, console_text(console)),
                    on_fail=lambda: console_text(console)[-2000:])


def last_tick(console):
    ticks = re.findall(r"vl-init: tick (\d+)", console_text(console))
    return int(ticks[-1]) if ticks else 0


def kill_qemus_under(directory):
    """Kills every QEMU whose command line names directory (its kernel is there): the guests
    of libvirtd that was gone before it could destroy them (QEMU outlives libvirtd by design)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"qemu-system-aarch64") and any(directory.encode() in a for a in argv):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def missing():
    """What this machine lacks to run real libvirtd (the tests, make demo), or None."""
    if os.geteuid() != 0:
        return "not root (libvirtd runs as root in a mount namespace of its own)"
    for path in (LIBVIRTD, "/usr/bin/qemu-system-aarch64", "/usr/bin/virsh"):
        if not os.path.exists(path):
            return "no %s (scripts/install-deps.sh libvirt)" % path
    if not glob.glob("/usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so"):
        return "no libvirt QEMU driver (scripts/install-deps.sh libvirt)"
    if not shutil.which("aarch64-linux-gnu-gcc"):
        return "no aarch64-linux-gnu-gcc (scripts/install-deps.sh libvirt)"
    return None
