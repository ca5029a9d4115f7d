#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""svemigd --check-config on good and bad files: bad ones are refused with
FILE:LINE: reason, and the daemon refuses to start on them too."""

import os
import re
import subprocess
import sys
import textwrap
import unittest

import svemigtest
from svemigtest import DaemonTestCase, SVEMIGD, WAIT

MIGRATE_CONF = os.environ.get("MIGRATE_CONF", "migrate.conf")


class CheckConfig(DaemonTestCase):
    def write(self, text, name="m.conf"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path

    def check(self, path):
        return subprocess.run([SVEMIGD, "--check-config", "--config", path], capture_output=True, text=True,
                              timeout=WAIT)

    def assert_refused(self, text, line, *words):
        path = self.write(text)
        r = self.check(path)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertTrue(r.stderr.startswith("%s:%d: " % (path, line)), r.stderr)
        for w in words:
            self.assertIn(w, r.stderr)
        return r.stderr

    # --- good ---

    def test_shipped_file_is_valid(self):
        # The shipped file names the svemig group, which this host may lack: check it with ours.
        with open(MIGRATE_CONF) as f:
            text = f.read()
        self.assertRegex(text, r"(?m)^socket-group = svemig$")
        text = re.sub(r"(?m)^socket-group = svemig$", "socket-group = %d" % os.getegid(), text)
        # It listens for peers, so it names peer TLS's files: the run's CA's here.
        ca, cert, key = svemigtest.host_cert("node1")
        for k, v in (("tls-ca", ca), ("tls-cert", cert), ("tls-key", key)):
            self.assertRegex(text, r"(?m)^%s = /etc/svemig/pki/" % k)
            text = re.sub(r"(?m)^%s = .*$" % k, "%s = %s" % (k, v), text)
        r = self.check(self.write(text))
        self.assertEqual(r.returncode, 0, r.stderr)
        for section in ("[daemon]", "[hypervisor]", "[sim]", "[snapshot]"):
            self.assertIn(section, r.stdout)
        self.assertIn("backend = auto", r.stdout)

    def test_shipped_file_documents_every_key(self):
        with open(MIGRATE_CONF) as f:
            text = f.read()
        for key in ("host-name", "state-directory", "socket", "socket-group", "log-level", "backend",
                    "kvm-device", "kernel", "cpus", "vq-map", "cpu6", "directory", "keep", "compression",
                    "[peer node2]", "address", "migration-channels", "[store]", "s3-endpoint", "s3-region",
                    "credentials-file", "profile", "ca-file", "part-size", "parallel-uploads", "retries",
                    "stall-timeout", "peer-tls", "tls-ca", "tls-cert", "tls-key"):
            self.assertRegex(text, r"(?m)^#?%s" % re.escape(key), key)

    def test_empty_file_gives_the_defaults(self):
        r = self.check(self.write(""))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("state-directory = /var/lib/svemig\n", r.stdout)
        self.assertIn("socket = /run/svemig/svemigd.sock\n", r.stdout)
        self.assertIn("cpu0 = 128,256,512\n", r.stdout)
        self.assertIn("keep = 3\n", r.stdout)
        self.assertIn("migration-channels = 4\n", r.stdout)

    def test_full_file_and_its_effective_configuration(self):
        path = self.write("""\
            ; a comment
            [daemon]
            host-name = node1
            state-directory = /srv/svemig
              socket = /srv/svemig.sock   ; indented keys are keys, not continuations
            socket-group = 0
            log-level = debug
            [hypervisor]
            backend = sim
            [sim]
            kernel = 6.1
            cpus = 4
            vq-map = vq1-vq4
            cpu3 = 128,256
            [snapshot]
            keep = 0
            compression = none
            [store]
            s3-endpoint = http://127.0.0.1:7480
            s3-region = eu-west-3
            credentials-file = /etc/svemig/s3-credentials
            part-size = 16M
            parallel-uploads = 2
            stall-timeout = 10s
            [cluster]
            peer-tls = no
            [peer node2]
            address = 192.0.2.7:7070
            [peer node3]
            address = [2001:db8::3]:7071
            """)
        r = self.check(path)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        self.assertIn("from %s" % path, out)
        self.assertIn("host-name = node1\n", out)
        self.assertIn("socket = /srv/svemig.sock\n", out)
        self.assertIn("backend = sim\n", out)
        self.assertIn("kernel = 6.1\n", out)
        self.assertIn("cpus = 4\n", out)
        self.assertIn("cpu0 = 128,256,384,512\n", out)
        self.assertIn("cpu3 = 128,256\n", out)
        # What the kernel's computation makes of those maps.
        self.assertIn("a new vcpu gets the VLS 128,256 (max 256 bits)", out)
        self.assertIn("directory = /srv/svemig/snapshots\n", out)
        self.assertIn("[store]\ns3-endpoint = http://127.0.0.1:7480\ns3-region = eu-west-3\n"
                      "credentials-file = /etc/svemig/s3-credentials\n", out)
        self.assertIn("part-size = 16777216\nparallel-uploads = 2\nretries = 5\nstall-timeout = 10s\n", out)
        self.assertIn("[peer node2]\naddress = 192.0.2.7:7070\n", out)
        self.assertIn("[peer node3]\naddress = [2001:db8::3]:7071\n", out)
        # The printed configuration reads back as the same configuration.
        again = self.check(self.write(out.replace("# svemigd's", "#"), "again.conf"))
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertEqual(again.stdout.split("\n", 1)[1], out.split("\n", 1)[1])

    # --- bad ---

    def test_unknown_key(self):
        err = self.assert_refused("""\
            [daemon]
            host-name = a

            colour = blue
            """, 4, "unknown key 'colour' in [daemon]", "host-name")

    def test_unknown_section(self):
        self.assert_refused("""\
            [daemon]
            [network]
            """, 2, "unknown section [network]", "[peer NAME]")

    def test_key_outside_a_section(self):
        self.assert_refused("backend = sim\n", 1, "outside any section")

    def test_bad_backend(self):
        self.assert_refused("""\
            [hypervisor]
            backend = xen
            """, 2, "backend = xen", "auto", "sim", "kvm")

    def test_bad_store(self):
        self.assert_refused("""\
            [store]
            s3-endpoint = 127.0.0.1:7480
            """, 2, "s3-endpoint = 127.0.0.1:7480", "http://HOST[:PORT]")
        self.assert_refused("""\
            [store]
            part-size = 1K
            """, 2, "part-size = 1K", "64K to 1G")

    def test_bad_vq_map(self):
        self.assert_refused("""\
            [sim]
            cpus = 2
            cpu0 = 128,256
            cpu1 = 128,300
            """, 4, "cpu1 = 128,300")

    def test_vq_map_beyond_the_architecture(self):
        self.assert_refused("""\
            [sim]
            vq-map = 128,4096
            """, 2, "4096-bit", "2048")

    def test_cpu_beyond_cpus(self):
        self.assert_refused("""\
            [sim]
            cpus = 2
            vq-map = 128
            cpu2 = 128
            """, 4, "cpu2", "cpus = 2 (line 2)")

    def test_cpu_without_a_map(self):
        self.assert_refused("""\
            [sim]
            cpus = 3
            cpu0 = 128
            cpu2 = 128
            """, 4, "no VQ map for cpu1")

    def test_bad_kernel(self):
        self.assert_refused("[sim]\nkernel = 5.10\n", 2, "6.1 or 6.12")

    def test_key_set_twice(self):
        self.assert_refused("""\
            [snapshot]
            keep = 2
            keep = 3
            """, 3, "already set on line 2")

    def test_bad_number(self):
        self.assert_refused("[snapshot]\nkeep = many\n", 2, "keep = many", "whole number")

    def test_migration_channels(self):
        for good in ("0", "16"):
            r = self.check(self.write("[cluster]\nmigration-channels = %s\n" % good))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("migration-channels = %s\n" % good, r.stdout)
        for bad in ("17", "-1", "two", "2x", ""):
            self.assert_refused("[cluster]\nmigration-channels = %s\n" % bad, 2, "memory channels from 0",
                                "to 16")

    def test_relative_path(self):
        self.assert_refused("[daemon]\nstate-directory = var/lib\n", 2, "absolute path")

    def test_unknown_group(self):
        self.assert_refused("[daemon]\nsocket-group = no-such-group-svemig-test\n", 2, "no such group")

    def test_peer_without_address(self):
        self.assert_refused("""\
            [daemon]
            [peer b]
            [snapshot]
            """, 2, "[peer b] has no address")

    def test_bad_peer_address(self):
        self.assert_refused("""\
            [peer b]
            address = 2001:db8::1:7070
            """, 2, "HOST:PORT")
        self.assert_refused("""\
            [peer b]
            address = b.example:70000
            """, 2, "65535")

    def test_peer_twice(self):
        self.assert_refused("""\
            [peer b]
            address = b:1
            [peer b]
            """, 3, "already defined on line 1")

    def test_syntax_error(self):
        self.assert_refused("""\
            [daemon]
            host-name = a
            just some words
            """, 3, "cannot parse the line")

    def test_long_line(self):
        self.assert_refused("[daemon]\nhost-name = %s\n" % ("a" * 300), 2, "longer than")

    def test_endless_line_is_refused_not_read_for_ever(self):
        # /dev/zero: one line without end, of NUL bytes. It used to be read until memory ran out.
        r = self.check("/dev/zero")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertTrue(r.stderr.startswith("/dev/zero:1: "), r.stderr)
        self.assertIn("longer than", r.stderr)

    def test_nul_and_non_utf8_are_refused(self):
        # "ab\0cd" used to be taken as "ab", silently.
        for bad, why in ((b"ab\0cd", "holds a NUL byte"), (b"a\xffb", "is not UTF-8")):
            path = os.path.join(self.dir, "bin.conf")
            with open(path, "wb") as f:
                f.write(b"[daemon]\nhost-name = " + bad + b"\n")
            r = self.check(path)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertTrue(r.stderr.startswith("%s:2: the line %s" % (path, why)), r.stderr)

    def test_empty_vq_map_is_not_no_sve(self):
        # An empty set is a mistake; "none" says a host has no SVE.
        self.assert_refused("""\
            [sim]
            vq-map =
            """, 2, "vq-map", "is empty", "none")
        self.assert_refused("""\
            [sim]
            cpus = 2
            cpu0 = 128
            cpu1 =
            """, 4, "cpu1", "is empty")

    # --- peer TLS ---

    PEERS = "[cluster]\nlisten = 127.0.0.1:7070\n"

    def tls(self, ca, cert, key):
        return self.PEERS + "tls-ca = %s\ntls-cert = %s\ntls-key = %s\n" % (ca, cert, key)

    def test_peer_tls_is_on_by_default_and_needs_its_files(self):
        path = self.write(self.PEERS)
        r = self.check(path)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertTrue(r.stderr.startswith(path + ": peer TLS is on (the default)"), r.stderr)
        for w in ("[cluster] tls-ca, tls-cert and tls-key are not set", "or set peer-tls = no for a lab"):
            self.assertIn(w, r.stderr)
        ca, cert, _ = svemigtest.host_cert("testhost")
        r = self.check(self.write(self.PEERS + "tls-ca = %s\ntls-cert = %s\n" % (ca, cert)))
        self.assertIn("[cluster] tls-key is not set", r.stderr)
        # A host without peers needs none.
        r = self.check(self.write("[cluster]\nrefresh-interval = 1s\n"))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_peer_tls_files_checked(self):
        ca, cert, key = svemigtest.host_cert("testhost")
        r = self.check(self.write(self.tls(ca, cert, key)))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("peer-tls = yes\ntls-ca = %s\ntls-cert = %s\ntls-key = %s\n" % (ca, cert, key), r.stdout)
        # Unreadable: named with its key and line.
        self.assert_refused(self.tls(ca, cert, key + ".missing"), 5, "tls-key = %s.missing: cannot read it: "
                            "No such file or directory" % key)
        self.assert_refused(self.tls(ca + ".missing", cert, key), 3, "tls-ca = %s.missing: cannot read it" % ca)
        # Another host's key: mismatched.
        _, _, other_key = svemigtest.host_cert("otherhost")
        self.assert_refused(self.tls(ca, cert, other_key), 4, "tls-cert: cannot use the certificate %s with the "
                            "key %s" % (cert, other_key), "tls-key must be the key tls-cert was made for")
        # Not PEM at all.
        self.assert_refused(self.tls(ca, key, cert), 4, "tls-cert: cannot use the certificate")
        # A certificate from another CA.
        other = os.path.join(self.dir, "other-ca")
        subprocess.run(["sh", svemigtest.MAKE_TEST_CA, other, "testhost"], check=True)
        self.assert_refused(self.tls(ca, os.path.join(other, "testhost.pem"),
                                     os.path.join(other, "testhost-key.pem")), 4, "does not chain to the CA in")
        self.assert_refused(self.PEERS + "tls-ca = relative.pem\n", 3, "tls-ca = relative.pem: expected an "
                            "absolute path")
        self.assert_refused(self.PEERS + "peer-tls = maybe\n", 3, "peer-tls = maybe: expected yes or no")

    def test_peer_tls_no_needs_no_files(self):
        r = self.check(self.write(self.PEERS + "peer-tls = no\n"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("peer-tls = no\n# (peer TLS is off: peers are neither authenticated nor encrypted)\n",
                      r.stdout)

    def test_missing_file(self):
        path = os.path.join(self.dir, "nope.conf")
        r = self.check(path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("%s: cannot open" % path, r.stderr)

    def test_daemon_refuses_to_start_on_a_bad_file(self):
        path = self.write("[daemon]\nsocket = %s/s.sock\n[sim]\ncpu0 = 128,999\n" % self.dir)
        r = subprocess.run([SVEMIGD, "--config", path, "--foreground"], capture_output=True, text=True,
                           timeout=WAIT)
        self.assertEqual(r.returncode, 1)
        self.assertIn("%s:4: cpu0 = 128,999" % path, r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "s.sock")))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
