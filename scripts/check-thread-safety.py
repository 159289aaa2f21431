#!/usr/bin/python3
"""Checks the lock annotations of every C++ file a build compiles, with clang's thread-safety
analysis: scripts/check-thread-safety.py build/asan

Each translation unit in the build's compile_commands.json is parsed again by clang++ with
-fsyntax-only -Wthread-safety -Werror (no code is generated, so it takes a fraction of a build).
A field declared ABSL_GUARDED_BY(mu) read without mu held, a *Locked method called without its
lock, a lock not released: each fails the check with clang's message. Generated code (protoc's)
is skipped. A source file is checked only when it, or a project header it includes (directly or
through others), names a Mutex, a lock annotation or a *Locked method: the analysis can only warn
where annotated declarations are seen, and absl::Mutex is only reached by naming it. A test file
is checked only when it takes locks or calls lock-annotated code itself: the project headers it
includes are analysed with every source file that includes them, and parsing the other tests
again would add minutes to `make test` and find nothing. Exit status: 0 when every file passes."""
import concurrent.futures
import json
import os
import re
import shlex
import subprocess
import sys

# GCC options clang does not know (or that only change GCC's warnings).
GCC_ONLY = ("-Wno-maybe-uninitialized", "-Wno-restrict", "-Wno-stringop-overflow",
            "-Wno-dangling-reference", "-Wno-array-bounds", "-fno-sanitize-recover=undefined")


def clang_command(entry):
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    out = ["clang++"]
    skip_next = False
    for a in args[1:]:
        if skip_next:
            skip_next = False
            continue
        if a == "-o":
            skip_next = True
            continue
        if a == "-c" or a in GCC_ONLY or a.startswith("-fsanitize"):
            continue
        out.append(a)
    out += ["-fsyntax-only", "-Wthread-safety", "-Wthread-safety-beta", "-Werror=thread-safety",
            "-Wno-unknown-warning-option", "-Wno-unused-command-line-argument"]
    return out


LOCK_WORDS = re.compile(r"Mutex|ABSL_[A-Z_]*(GUARDED|LOCK|REQUIRES)|Locked\(")


INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.MULTILINE)


def takes_locks(path):
    with open(path, errors="replace") as f:
        return LOCK_WORDS.search(f.read()) is not None


def reaches_locks(path, roots, seen):
    """True when path or a project header it includes (transitively) names locks."""
    if path in seen:
        return False
    seen.add(path)
    with open(path, errors="replace") as f:
        text = f.read()
    if LOCK_WORDS.search(text):
        return True
    for name in INCLUDE.findall(text):
        for base in [os.path.dirname(path)] + roots:
            candidate = os.path.normpath(os.path.join(base, name))
            if os.path.isfile(candidate):
                if reaches_locks(candidate, roots, seen):
                    return True
                break
    return False


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build/asan"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(build, "compile_commands.json")) as f:
        entries = json.load(f)
    src = os.path.join(root, "src") + os.sep
    tests = os.path.join(root, "tests") + os.sep
    roots = [os.path.join(root, "src"), root, os.path.join(root, "tests")]
    todo = [e for e in entries
            if ((e["file"].startswith(src) and reaches_locks(e["file"], roots, set())) or
                (e["file"].startswith(tests) and takes_locks(e["file"])))
            and not e["file"].endswith(".pb.cc")]
    if not todo:
        print(f"no project files in {build}/compile_commands.json", file=sys.stderr)
        return 2
    failed = []

    def check(entry):
        r = subprocess.run(clang_command(entry), cwd=entry["directory"], capture_output=True,
                           text=True)
        return entry["file"], r.returncode, r.stderr

    jobs = int(os.environ.get("JOBS", os.cpu_count() or 2))
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for path, rc, err in pool.map(check, todo):
            if rc != 0:
                failed.append(path)
                sys.stderr.write(err)
    print(f"thread-safety analysis: {len(todo) - len(failed)} of {len(todo)} files pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
