#!/usr/bin/python3
"""Builds the hivemesh OCI image from a build folder, offline, with buildah from scratch: no base
image, no registry. The image holds only what the node loads:

- /usr/bin/hivemesh and its plugins in /usr/lib/<multiarch>/hivemesh (stripped copies);
- every shared library they need, found by following their DT_NEEDED entries through the
  machine's multiarch folders (readelf, so a cross build's arm64 files work the same), and the
  dynamic loader;
- the shipped models, the Haar cascade the face detector reads (opencv-data), the CA bundle for
  mqtts, /etc/passwd and /etc/group with the user `hivemesh` (uid 10001), /etc/hivemesh/node.yaml
  listening on every address, /var/lib/hivemesh (a volume) and /tmp.

It runs as uid 10001, its entry point is the unit's ExecStart line (arguments after the image
name are appended: later flags win over node.yaml), and its health check is `hivemesh health`
against $HIVEMESH_NODE (127.0.0.1:8000 unless set). Labels: the OCI title, version, description,
source, licenses.

    build-image.py BUILD_DIR [--slim] [--tag NAME] [--arch amd64|arm64] [--oci-dir DIR]

--slim leaves out the OpenCV plugin and its libraries (and the models that need it): the node
then serves the identity model, KServe v2 workloads and services. --oci-dir also writes the image
as an OCI layout with gzip layers, whose size is printed: that is what a registry would store.
The last line is `RESULT image=<tag> size_bytes=<n> compressed_bytes=<n>`.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MULTIARCH = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
UID = 10001

# The image's entry point: the unit's ExecStart line (what follows the image name is appended).
ENTRYPOINT = ["/usr/bin/hivemesh", "agent", "--config", "/etc/hivemesh/node.yaml", "--state-dir",
              "/var/lib/hivemesh"]

IMAGE_CONFIG = """\
# hivemesh node settings in the image (`hivemesh agent --help` lists every key). Mount your own
# file over this one, or append flags after the image name: later flags win.
model_repository: /usr/share/hivemesh/models
http_address: 0.0.0.0:8000
grpc_address: 0.0.0.0:8001
gossip_address: 0.0.0.0:7946
"""


def run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        sys.exit(f"build-image: {' '.join(cmd)} failed:\n{out.stderr}")
    return out.stdout


def needed(path):
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", run(["readelf", "-d", path]))


def interpreter(path):
    m = re.search(r"Requesting program interpreter: ([^\]]+)\]", run(["readelf", "-l", path]))
    return m.group(1) if m else None


def library_closure(files, multiarch):
    """soname -> real file, for every library `files` need, transitively."""
    folders = [f"/usr/lib/{multiarch}", f"/lib/{multiarch}", "/usr/lib", "/lib"]
    found, todo = {}, list(files)
    while todo:
        for soname in needed(todo.pop()):
            if soname in found:
                continue
            for folder in folders:
                candidate = os.path.join(folder, soname)
                if os.path.exists(candidate):
                    found[soname] = os.path.realpath(candidate)
                    todo.append(found[soname])
                    break
            else:
                sys.exit(f"build-image: {soname} not found in {folders}")
    return found


def copy(src, dst, mode=None, strip=None):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)
    if strip:
        run([strip, "--strip-unneeded", dst])
    os.chmod(dst, mode if mode is not None else 0o644)


def write(dst, text, mode=0o644):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "w") as f:
        f.write(text)
    os.chmod(dst, mode)


def make_rootfs(build, rootfs, slim, arch):
    multiarch = MULTIARCH[arch]
    strip = "strip" if arch == "amd64" else f"{multiarch}-strip"
    binary = os.path.join(build, "hivemesh")
    plugins = ["libhivemesh_grpc.so"] + ([] if slim else ["libhivemesh_opencv.so"])
    libdir = f"usr/lib/{multiarch}"
    copy(binary, f"{rootfs}/usr/bin/hivemesh", 0o755, strip)
    for plugin in plugins:
        copy(os.path.join(build, plugin), f"{rootfs}/{libdir}/hivemesh/{plugin}", 0o644, strip)
    elves = [binary] + [os.path.join(build, p) for p in plugins]
    for soname, real in library_closure(elves, multiarch).items():
        copy(real, f"{rootfs}/{libdir}/{soname}", 0o644)
    loader = interpreter(binary)
    copy(os.path.realpath(loader), f"{rootfs}/usr{loader}", 0o755)
    # The merged /usr layout Debian has: /lib, /lib64 and /bin are links into /usr.
    for link in ("lib", "lib64", "bin"):
        if os.path.isdir(f"{rootfs}/usr/{link}"):
            os.symlink(f"usr/{link}", f"{rootfs}/{link}")

    models = os.path.join(ROOT, "models")
    for model in sorted(os.listdir(models)):
        if slim and model != "identity":
            continue  # every other shipped model runs on the OpenCV plugin
        shutil.copytree(os.path.join(models, model), f"{rootfs}/usr/share/hivemesh/models/{model}")
    if not slim:
        cascade = "haarcascades/haarcascade_frontalface_default.xml"
        copy(f"/usr/share/opencv4/{cascade}", f"{rootfs}/usr/share/opencv4/{cascade}")
    if os.path.exists("/etc/ssl/certs/ca-certificates.crt"):
        copy("/etc/ssl/certs/ca-certificates.crt", f"{rootfs}/etc/ssl/certs/ca-certificates.crt")
    write(f"{rootfs}/etc/passwd", f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
          f"hivemesh:x:{UID}:{UID}:hivemesh node:/var/lib/hivemesh:/usr/sbin/nologin\n")
    write(f"{rootfs}/etc/group", f"root:x:0:\nhivemesh:x:{UID}:\n")
    write(f"{rootfs}/etc/hivemesh/node.yaml", IMAGE_CONFIG)
    os.makedirs(f"{rootfs}/var/lib/hivemesh")
    os.chmod(f"{rootfs}/var/lib/hivemesh", 0o700)
    os.makedirs(f"{rootfs}/tmp")
    os.chmod(f"{rootfs}/tmp", 0o1777)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("build")
    p.add_argument("--slim", action="store_true")
    p.add_argument("--tag")
    p.add_argument("--arch", default="amd64", choices=sorted(MULTIARCH))
    p.add_argument("--oci-dir")
    args = p.parse_args()
    with open(os.path.join(args.build, "version.txt")) as f:
        version = f.read().strip()  # written by CMake: a cross build's binary does not run here
    tag = args.tag or f"localhost/hivemesh:{version}{'-slim' if args.slim else ''}" + \
        ("" if args.arch == "amd64" else f"-{args.arch}")

    work = tempfile.mkdtemp(prefix="hivemesh-image-")
    box = None
    try:
        rootfs = os.path.join(work, "rootfs")
        make_rootfs(args.build, rootfs, args.slim, args.arch)
        box = run(["buildah", "from", "--arch", args.arch, "scratch"]).strip()
        run(["buildah", "copy", box, rootfs + "/", "/"])
        # buildah copy makes root the owner of everything: the state folder is the node's.
        mounted = run(["buildah", "mount", box]).strip()
        os.chown(f"{mounted}/var/lib/hivemesh", UID, UID)
        run(["buildah", "umount", box])
        run(["buildah", "config",
             "--arch", args.arch, "--os", "linux",
             "--user", f"{UID}:{UID}",
             "--workingdir", "/var/lib/hivemesh",
             "--env", "HIVEMESH_NODE=127.0.0.1:8000",
             "--entrypoint", json.dumps(ENTRYPOINT),
             "--cmd", "[]",
             "--port", "8000/tcp", "--port", "8001/tcp", "--port", "7946/tcp",
             "--port", "7946/udp",
             "--volume", "/var/lib/hivemesh",
             "--stop-signal", "SIGTERM",
             "--healthcheck", "CMD /usr/bin/hivemesh health",
             "--healthcheck-interval", "15s", "--healthcheck-timeout", "5s",
             "--healthcheck-start-period", "60s", "--healthcheck-retries", "3",
             "--label", "org.opencontainers.image.title=hivemesh",
             "--label", f"org.opencontainers.image.version={version}",
             "--label", "org.opencontainers.image.description=edge AI models as KServe v2 "
                        "services in a gossip mesh" + (" (without OpenCV)" if args.slim else ""),
             "--label", "org.opencontainers.image.source=https://github.com/hivemesh/hivemesh",
             "--label", "org.opencontainers.image.licenses=NOASSERTION",
             box])
        # Docker's format: the OCI image config has no field for a health check.
        run(["buildah", "commit", "--format", "docker", "--rm", box, tag])
        box = None
        size = int(run(["podman", "image", "inspect", "--format", "{{.Size}}", tag]).strip())
        compressed = 0
        if args.oci_dir:
            shutil.rmtree(args.oci_dir, ignore_errors=True)
            run(["buildah", "push", "--compression-format", "gzip", tag, f"oci:{args.oci_dir}"])
            blobs = os.path.join(args.oci_dir, "blobs", "sha256")
            compressed = sum(os.path.getsize(os.path.join(blobs, b)) for b in os.listdir(blobs))
        print(f"image {tag}: {size / 1e6:.1f} MB" +
              (f", {compressed / 1e6:.1f} MB compressed (gzip layers in {args.oci_dir})"
               if compressed else ""))
        print(f"RESULT image={tag} size_bytes={size} compressed_bytes={compressed}")
    finally:
        if box:
            subprocess.run(["buildah", "rm", box], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
