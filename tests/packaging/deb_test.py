#!/usr/bin/python3
"""The Debian package (`make package`, cmake/Packaging.cmake, packaging/debian/), made from the
build under test and used in a throwaway root, never on this machine:

- the package is made with CPack and lintian finds no error in it;
- the root is an overlay of this machine's file system (so every Depends is there, as after
  `apt-get -f install`) whose writes go to a scratch folder, in a mount namespace of its own:
  everything the package does to the system shows up in that folder;
- `dpkg -i` installs it: the binary, its plugins, the shipped models, the conffile, the unit
  (enabled), the man pages, and the system user made by postinst;
- the unit's own ExecStart line, run as its user in that root (systemd is not PID 1 here), serves
  /v2/health/ready and the four shipped models, with the OpenCV plugin loaded from the package's
  folder, and stops cleanly on SIGTERM;
- a newer package whose node.yaml changed too upgrades it unattended (--force-confold) and keeps
  the operator's edited node.yaml (the new one beside it, .dpkg-dist) and the node's state;
- `dpkg -r` removes the program and keeps the configuration; `dpkg -P` leaves nothing behind:
  every file the root differs from this machine in is dpkg's own bookkeeping.

    deb_test.py path/to/build/hivemesh      (root; the build's CPackConfig.cmake is next to it)
"""
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
from agent_node import free_port, http_get, wait_for  # noqa: E402

SHIPPED_MODELS = ("face-detector", "identity", "people-detector", "vibration-anomaly")
MULTIARCH = subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"], capture_output=True,
                           text=True).stdout.strip() or "x86_64-linux-gnu"
PLUGIN_DIR = f"/usr/lib/{MULTIARCH}/hivemesh"

# What dpkg, adduser and man-db may leave in a root after a purge: their own records, logs and
# backups. Anything else that differs from this machine is something the package left behind.
BOOKKEEPING = re.compile(
    r"^(var/lib/dpkg(/.*)?|var/log/dpkg\.log|var/log/apt(/.*)?|var/cache/man(/.*)?|"
    r"var/cache/debconf(/.*)?|etc/(passwd|group|shadow|gshadow)-|etc/\.pwd\.lock|"
    r"var/cache/ldconfig(/.*)?|etc/ld\.so\.cache|var/tmp|var/tmp/hivemesh[^/]*\.deb|"
    r"etc/machine-id|proc|dev|tmp)$")
NEXT_RELEASE_LINE = "# a setting of the next release\n"
OWN_FOLDERS = re.compile(r"^(var/lib|var/cache|etc)/hivemesh$")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 300),
                          **kw)


class ThrowawayRoot:
    """An overlay of / in a private mount namespace held by a sleeping process: commands enter the
    namespace and chroot into the overlay; writes land in `upper`. Killing the holder unmounts
    everything."""

    def __init__(self, scratch):
        self.upper = os.path.join(scratch, "upper")
        self.work = os.path.join(scratch, "work")
        self.path = os.path.join(scratch, "root")
        for d in (self.upper, self.work, self.path):
            os.makedirs(d)
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                        "sleep", "3600"], start_new_session=True)
        mounts = (f"mount -t overlay overlay -o lowerdir=/,upperdir={self.upper},"
                  f"workdir={self.work} {self.path} && mount -t proc proc {self.path}/proc && "
                  f"mount --rbind /dev {self.path}/dev && "
                  f"mount -t tmpfs tmpfs {self.path}/tmp")
        # The namespace exists once unshare has exec'd sleep.
        wait_for(lambda: os.readlink(f"/proc/{self.holder.pid}/ns/mnt") !=
                 os.readlink("/proc/self/ns/mnt"), 10, "the mount namespace")
        out = run(["nsenter", "-t", str(self.holder.pid), "-m", "sh", "-c", mounts])
        if out.returncode != 0:
            self.close()
            raise AssertionError(f"cannot make the throwaway root (overlayfs as root is needed): "
                                 f"{out.stderr}")

    def command(self, args, user=None):
        chroot = ["chroot"] + ([f"--userspec={user}:{user}"] if user else []) + [self.path]
        return ["nsenter", "-t", str(self.holder.pid), "-m"] + chroot + list(args)

    def run(self, *args, user=None, timeout=300):
        return run(self.command(args, user), timeout=timeout)

    def file(self, path):
        """Where a path of the root is, seen from here (through the holder's namespace)."""
        return f"/proc/{self.holder.pid}/root{self.path}{path}"

    def close(self):
        if self.holder.poll() is None:
            os.killpg(self.holder.pid, signal.SIGKILL)
            self.holder.wait()


class DebPackageTest(unittest.TestCase):
    BINARY = None

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise AssertionError("deb_test needs root (mount namespaces, overlayfs, chroot)")
        for tool in ("cpack", "dpkg-deb", "lintian", "help2man", "unshare", "nsenter"):
            if shutil.which(tool) is None:
                raise AssertionError(f"{tool} is missing: scripts/install-deps.sh installs it")
        build = os.path.dirname(os.path.abspath(cls.BINARY))
        cls.scratch = tempfile.mkdtemp(prefix="hivemesh-deb-")
        out = run(["cpack", "-G", "DEB", "--config", os.path.join(build, "CPackConfig.cmake"),
                   "-B", os.path.join(cls.scratch, "out"),
                   "-D", "CPACK_DEBIAN_COMPRESSION_TYPE=gzip"], timeout=600)
        if out.returncode != 0:
            raise AssertionError(f"cpack failed:\n{out.stdout}\n{out.stderr}")
        debs = [f for f in os.listdir(os.path.join(cls.scratch, "out")) if f.endswith(".deb")]
        if len(debs) != 1:
            raise AssertionError(f"cpack made {debs}")
        cls.deb = os.path.join(cls.scratch, "out", debs[0])
        cls.version = run(["dpkg-deb", "-f", cls.deb, "Version"]).stdout.strip()
        cls.newer_version = cls.version + "+next"
        cls.newer = cls.make_newer()
        cls.root = ThrowawayRoot(cls.scratch)
        # A fresh system has none of the package's folders; a node run by hand as root on this
        # machine may have left its state folder, which the root must not inherit.
        cls.root.run("rm", "-rf", "/var/lib/hivemesh", "/var/cache/hivemesh", "/etc/hivemesh")
        for deb in (cls.deb, cls.newer):
            shutil.copy(deb, cls.root.file("/var/tmp/" + os.path.basename(deb)))

    @classmethod
    def make_newer(cls):
        """The same package under a later version, as the next release would be."""
        tree = os.path.join(cls.scratch, "newer")
        run(["dpkg-deb", "-R", cls.deb, tree]).check_returncode()
        control = os.path.join(tree, "DEBIAN", "control")
        with open(control) as f:
            text = f.read()
        with open(control, "w") as f:
            f.write(re.sub(r"(?m)^Version: .*$", f"Version: {cls.newer_version}", text))
        # The next release ships a node.yaml of its own: with the operator's edits, the upgrade
        # must keep theirs (and set the new one beside it).
        conf = os.path.join(tree, "etc", "hivemesh", "node.yaml")
        with open(conf, "a") as f:
            f.write(NEXT_RELEASE_LINE)
        with open(conf, "rb") as f:
            digest = hashlib.md5(f.read()).hexdigest()
        sums = os.path.join(tree, "DEBIAN", "md5sums")
        with open(sums) as f:
            lines = [f"{digest}  etc/hivemesh/node.yaml" if l.endswith(" etc/hivemesh/node.yaml")
                     else l for l in f.read().splitlines()]
        with open(sums, "w") as f:
            f.write("\n".join(lines) + "\n")
        newer = os.path.join(cls.scratch, f"hivemesh_{cls.newer_version}.deb")
        out = run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "-b", tree, newer])
        if out.returncode != 0:
            raise AssertionError(out.stderr)
        shutil.rmtree(tree)
        return newer

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "node", None) is not None and cls.node.poll() is None:
            os.killpg(cls.node.pid, signal.SIGKILL)
            cls.node.wait()
        if getattr(cls, "root", None) is not None:
            cls.root.close()
        shutil.rmtree(cls.scratch, ignore_errors=True)

    def dpkg(self, *args):
        out = self.root.run("dpkg", *args)
        self.assertEqual(out.returncode, 0, f"dpkg {' '.join(args)}:\n{out.stdout}\n{out.stderr}")
        return out

    def status(self):
        return self.root.run("dpkg-query", "-W", "-f=${Status} ${Version}", "hivemesh").stdout

    def exists(self, path):
        return os.path.lexists(self.root.file(path))

    def test_1_lintian_finds_no_error(self):
        out = run(["lintian", "--fail-on", "error", self.deb], timeout=300)
        errors = [line for line in out.stdout.splitlines() if line.startswith("E:")]
        self.assertEqual(errors, [], out.stdout)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)

    def test_2_it_installs(self):
        self.dpkg("-i", "/var/tmp/" + os.path.basename(self.deb))
        self.assertEqual(self.status(), f"install ok installed {self.version}")
        for path in ("/usr/bin/hivemesh", f"{PLUGIN_DIR}/libhivemesh_opencv.so",
                     f"{PLUGIN_DIR}/libhivemesh_grpc.so", "/etc/hivemesh/node.yaml",
                     "/lib/systemd/system/hivemesh.service",
                     "/usr/share/man/man1/hivemesh.1.gz", "/usr/share/man/man1/hivemesh-agent.1.gz",
                     "/usr/share/doc/hivemesh/copyright", "/usr/share/doc/hivemesh/changelog.gz"):
            self.assertTrue(self.exists(path), path)
        for model in SHIPPED_MODELS:
            self.assertTrue(self.exists(f"/usr/share/hivemesh/models/{model}/config.yaml"), model)
        # The system user postinst made, with no login.
        user = self.root.run("getent", "passwd", "hivemesh").stdout.strip().split(":")
        self.assertEqual(len(user), 7, user)
        self.assertLess(int(user[2]), 1000, "a system user")
        self.assertEqual(user[5], "/var/lib/hivemesh")
        self.assertIn("nologin", user[6])
        self.assertTrue(self.root.run("getent", "group", "hivemesh").stdout.startswith("hivemesh:"))
        # Its state folder, made by postinst for a start without systemd (systemd's
        # StateDirectory= would make it too): the user's, 0700.
        state = os.stat(self.root.file("/var/lib/hivemesh"))
        self.assertEqual(state.st_uid, int(user[2]))
        self.assertEqual(stat.S_IMODE(state.st_mode), 0o700)
        # Enabled, as systemd would start it at boot.
        wants = "/etc/systemd/system/multi-user.target.wants/hivemesh.service"
        self.assertTrue(self.exists(wants), "the unit is not enabled")
        self.assertEqual(os.readlink(self.root.file(wants)), "/lib/systemd/system/hivemesh.service")
        self.assertEqual(self.root.run("hivemesh", "--version").stdout.strip(),
                         self.version.replace("~", "-"))

    def exec_start(self):
        with open(self.root.file("/lib/systemd/system/hivemesh.service")) as f:
            line = next(l for l in f.read().splitlines() if l.startswith("ExecStart="))
        return line[len("ExecStart="):].split()

    def get(self, path):
        return http_get(self.http, path)

    def test_3_its_unit_line_serves_the_shipped_models(self):
        # The operator opens the node on ports of their choosing: an edit of the conffile.
        cls = type(self)
        cls.http, grpc, gossip = free_port(), free_port(), free_port()
        conf = self.root.file("/etc/hivemesh/node.yaml")
        with open(conf) as f:
            text = f.read()
        text = (text.replace("127.0.0.1:8000", f"127.0.0.1:{cls.http}")
                .replace("127.0.0.1:8001", f"127.0.0.1:{grpc}")
                .replace("127.0.0.1:7946", f"127.0.0.1:{gossip}"))
        text += "node_name: packaged\n"
        with open(conf, "w") as f:
            f.write(text)
        cls.edited_conf = text
        argv = self.exec_start()
        self.assertEqual(argv[0], "/usr/bin/hivemesh")
        log = open(os.path.join(self.scratch, "node.log"), "w")
        cls.node = subprocess.Popen(self.root.command(argv, user="hivemesh"), stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            try:
                wait_for(lambda: self.get("/v2/health/ready")[0] == 200, 120,
                         "the packaged node to be ready")
            except AssertionError as e:
                with open(log.name) as f:
                    raise AssertionError(f"{e}; its log:\n{f.read()[-3000:]}") from None
            for model in SHIPPED_MODELS:
                wait_for(lambda: self.get(f"/v2/models/{model}/ready")[0] == 200, 60,
                         f"{model} to be ready")
            status, body = self.get("/v2")
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["version"], self.version.replace("~", "-"))
            # An inference on a shipped model.
            req = urllib.request.Request(
                f"http://127.0.0.1:{cls.http}/v2/models/identity/infer",
                data=json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32",
                                             "shape": [4], "data": [1, 2, 3, 4]}]}).encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                self.assertEqual(json.loads(r.read())["outputs"][0]["data"], [1, 2, 3, 4])
            # Its OpenCV backends come from the package's plugin folder, and it runs as its user.
            pid = self.node_pid()
            with open(f"/proc/{pid}/maps") as f:
                maps = f.read()
            self.assertIn(f"{PLUGIN_DIR}/libhivemesh_opencv.so", maps)
            self.assertEqual(os.stat(f"/proc/{pid}").st_uid,
                             int(self.root.run("id", "-u", "hivemesh").stdout))
            # Its key and certificates are in its state folder, and only it can read them.
            state = self.root.file("/var/lib/hivemesh")
            self.assertTrue(os.listdir(state), "nothing written to the state folder")
            self.assertEqual(stat.S_IMODE(os.stat(state).st_mode), 0o700)
        finally:
            os.killpg(cls.node.pid, signal.SIGTERM)
            code = cls.node.wait(timeout=90)
            log.close()
        self.assertEqual(code, 0, "the node did not stop cleanly on SIGTERM")

    def node_pid(self):
        """The hivemesh process under nsenter and chroot."""
        out = run(["pgrep", "-s", str(self.node.pid), "-x", "hivemesh"]).stdout.split()
        self.assertEqual(len(out), 1, out)
        return int(out[0])

    def test_4_an_upgrade_keeps_the_configuration_and_state(self):
        state_before = sorted(os.listdir(self.root.file("/var/lib/hivemesh")))
        # As an unattended upgrade runs it: the operator's conffile kept, without a question.
        self.dpkg("--force-confdef", "--force-confold", "-i",
                  "/var/tmp/" + os.path.basename(self.newer))
        self.assertEqual(self.status(), f"install ok installed {self.newer_version}")
        with open(self.root.file("/etc/hivemesh/node.yaml")) as f:
            self.assertEqual(f.read(), self.edited_conf, "the operator's node.yaml was replaced")
        with open(self.root.file("/etc/hivemesh/node.yaml.dpkg-dist")) as f:
            self.assertTrue(f.read().endswith(NEXT_RELEASE_LINE), "the new release's node.yaml")
        for leftover in (".dpkg-old", ".dpkg-new"):
            self.assertFalse(self.exists("/etc/hivemesh/node.yaml" + leftover), leftover)
        self.assertEqual(sorted(os.listdir(self.root.file("/var/lib/hivemesh"))), state_before)
        self.assertEqual(self.root.run("getent", "passwd", "hivemesh").returncode, 0)

    def test_5_remove_keeps_the_configuration(self):
        self.dpkg("-r", "hivemesh")
        self.assertTrue(self.status().startswith("deinstall ok config-files"), self.status())
        self.assertFalse(self.exists("/usr/bin/hivemesh"))
        self.assertFalse(self.exists(PLUGIN_DIR))
        self.assertFalse(self.exists("/usr/share/hivemesh"))
        self.assertTrue(self.exists("/etc/hivemesh/node.yaml"))

    def test_6_purge_leaves_nothing_behind(self):
        self.dpkg("-P", "hivemesh")
        self.assertEqual(self.root.run("getent", "passwd", "hivemesh").returncode, 2)
        self.assertEqual(self.root.run("getent", "group", "hivemesh").returncode, 2)
        left = []
        for folder, dirs, files in os.walk(self.root.upper):
            for name in dirs + files:
                full = os.path.join(folder, name)
                rel = os.path.relpath(full, self.root.upper)
                if BOOKKEEPING.match(rel) or any(BOOKKEEPING.match(p) for p in parents(rel)):
                    continue
                st = os.lstat(full)
                host = "/" + rel
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    # A purge removes the package's folders, also ones a node run by hand
                    # before the package left on this machine.
                    if not OWN_FOLDERS.match(rel):
                        left.append(f"{rel}: deleted from the system")
                elif not os.path.lexists(host):
                    left.append(f"{rel}: new")
                elif stat.S_ISREG(st.st_mode) and not same_file(full, host):
                    left.append(f"{rel}: changed")
                elif stat.S_ISLNK(st.st_mode) and os.readlink(full) != os.readlink(host):
                    left.append(f"{rel}: changed link")
        self.assertEqual(left, [], "the purge left these behind")
        with open(self.root.file("/var/lib/dpkg/status")) as f:
            self.assertNotIn("Package: hivemesh\n", f.read())


def parents(rel):
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def same_file(a, b):
    try:
        with open(a, "rb") as x, open(b, "rb") as y:
            return x.read() == y.read()
    except OSError:
        return False


if __name__ == "__main__":
    DebPackageTest.BINARY = sys.argv.pop(1)
    unittest.main(verbosity=2)
