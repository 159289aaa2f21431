#!/usr/bin/python3
"""The mesh link against HTTP/2 (h2c, nghttp2) for the hop between two nodes, in the same run.

Two server processes run side by side on loopback, one I/O thread each: the project's HttpServer
taking mesh links, and the h2c prototype (bench/hop_overhead/h2c) serving HTTP/2 with prior
knowledge. Both check the forwarding node's member credential and run the same handler (it
checks the request and answers ~100 bytes with a serving node's fields). A client process per
measurement forwards requests as node A does: the project's PeerClient over a mesh link, or the
prototype's H2cClient over one h2c connection, each request a stream, from the client's I/O
thread, `concurrency` requests open at once.

Two requests: a small KServe v2 JSON request (~200 bytes, ~100-byte answer) and a large one (a
64-byte head and a 64 KiB tensor sent without a copy, ~100-byte answer). For each, concurrency 1
(latency) and 32 (throughput). Rounds alternate the two transports (and which goes first), so
that a slow patch of a shared machine lands on both; the report takes the median of each figure
over rounds and gives h2c / link. CPU time per request is each process's CPU time over the
measured seconds (all threads, /proc/<pid>/task/*/schedstat) divided by the requests answered.

With --syscalls, one more run per transport and case counts the system calls both processes
make per request (`perf stat`, package linux-perf; root or perf_event_paranoid <= 1).
With --instructions, one more pass per transport runs both processes under valgrind's callgrind
and counts the user-space instructions each executes per request, over a fixed number of
requests after a warm-up (the figure that does not move from run to run on a small machine; at
c=32 the batching under callgrind's slowdown need not be the native one).
With --handler worker, the serving side answers on a worker thread, as a model's instance does,
instead of on the I/O thread.

    bench/hop_overhead/bench_link_vs_h2c.py [--build build/release] [--seconds 3] [--rounds 5]
                                            [--handler inline|worker] [--syscalls]
                                            [--instructions [--requests 20000]]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "hop_overhead"))
from bench_hop_instructions import callgrind, total_instructions  # noqa: E402
TRANSPORTS = ("link", "h2c")
CASES = [("small", 1), ("small", 32), ("large", 1), ("large", 32)]
FIGURES = ("rps", "p50_us", "p99_us", "client_cpu_us", "server_cpu_us", "client_switches",
           "server_switches")


def start_server(binary, transport, handler, wrap=None):
    cmd = [binary, "serve", "--transport", transport, "--handler", handler]
    proc = subprocess.Popen(wrap(cmd) if wrap else cmd, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.DEVNULL if wrap else None)  # valgrind's banner
    line = proc.stdout.readline()
    if not line.startswith("port "):
        sys.exit(f"the {transport} server did not start")
    return proc, int(line.split()[1])


def drive(binary, transport, port, server_pid, size, conns, seconds, warmup, wrap=(), extra=(),
          timeout=60):
    cmd = list(wrap) + [binary, "drive", "--transport", transport,
                        "--address", f"127.0.0.1:{port}", "--size", size,
                        "--concurrency", str(conns), "--seconds", str(seconds),
                        "--warmup", str(warmup), "--server-pid", str(server_pid)] + list(extra)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + warmup + timeout)
    if out.returncode != 0:
        sys.exit(f"{transport} {size} c={conns} failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def perf_count(path):
    with open(path) as f:
        line = next(l for l in f if "raw_syscalls" in l)
    count = line.split(",")[0]
    if not count.isdigit():
        sys.exit(f"perf could not count system calls ({line.strip()}): run as root or lower "
                 "/proc/sys/kernel/perf_event_paranoid")
    return int(count)


def count_syscalls(binary, transport, port, server_pid, size, conns, seconds, work):
    """System calls per request of the client (the whole run) and the server (while it runs)."""
    client_out = os.path.join(work, f"perf-client-{transport}-{size}-{conns}.csv")
    server_out = os.path.join(work, f"perf-server-{transport}-{size}-{conns}.csv")
    server = subprocess.Popen(["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter",
                               "-o", server_out, "-p", str(server_pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    r = drive(binary, transport, port, server_pid, size, conns, seconds, 0.3,
              wrap=["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-o", client_out,
                    "--"])
    time.sleep(0.1)
    server.send_signal(2)  # SIGINT: perf writes its counts
    server.wait(timeout=30)
    total = r["total_requests"]
    return perf_count(client_out) / total, perf_count(server_out) / total


def count_instructions(binary, transport, handler, requests, work):
    """User-space instructions per request of the client and the server, per case."""
    per = {}
    out = os.path.join(work, f"server-{transport}.callgrind")
    proc, port = start_server(binary, transport, handler, lambda cmd: callgrind(cmd, out))
    try:
        for size, conns in CASES:
            client_out = os.path.join(work, f"client-{transport}-{size}-{conns}.callgrind")
            drive(binary, transport, port, proc.pid, size, conns, 0, 3,
                  wrap=callgrind([], client_out),
                  extra=["--instructions", str(requests), "--callgrind-server", "1"], timeout=900)
            time.sleep(0.5)
            per[(size, conns)] = (total_instructions(client_out) / requests,
                                  total_instructions(out) / requests)
    finally:
        proc.stdin.close()
        proc.wait(timeout=120)
    return per


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--handler", choices=("inline", "worker"), default="inline",
                    help="answer on the I/O thread (inline) or on a worker thread, as a model")
    ap.add_argument("--syscalls", action="store_true",
                    help="also count system calls per request on both sides (perf)")
    ap.add_argument("--instructions", action="store_true",
                    help="also count user-space instructions per request on both sides (callgrind)")
    ap.add_argument("--requests", type=int, default=20000,
                    help="requests counted under callgrind per case (--instructions)")
    args = ap.parse_args()
    binary = os.path.join(args.build, "bench", "link_vs_h2c")
    if not os.path.exists(binary):
        sys.exit(f"{binary} is missing: build the benchmarks (scripts/install-deps.sh installs "
                 "libnghttp2-dev)")
    if args.syscalls and not shutil.which("perf"):
        sys.exit("--syscalls needs perf: apt-get install --no-install-recommends linux-perf")
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if args.instructions and not shutil.which(tool):
            sys.exit(f"--instructions needs {tool}: run scripts/install-deps.sh")

    servers = {}
    rounds = []
    syscalls = {}
    instructions = {}
    with tempfile.TemporaryDirectory() as work:
        try:
            for t in TRANSPORTS:
                servers[t] = start_server(binary, t, args.handler)
            for n in range(args.rounds):
                results = {}
                order = TRANSPORTS if n % 2 == 0 else TRANSPORTS[::-1]
                for size, conns in CASES:
                    for t in order:
                        proc, port = servers[t]
                        results[(t, size, conns)] = drive(binary, t, port, proc.pid, size, conns,
                                                          args.seconds, args.warmup)
                rounds.append(results)
            if args.syscalls:
                for size, conns in CASES:
                    for t in TRANSPORTS:
                        proc, port = servers[t]
                        syscalls[(t, size, conns)] = count_syscalls(
                            binary, t, port, proc.pid, size, conns, args.seconds, work)
        finally:
            for proc, _ in servers.values():
                proc.stdin.close()
            for proc, _ in servers.values():
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if args.instructions:
            for t in TRANSPORTS:
                for case, ins in count_instructions(binary, t, args.handler, args.requests,
                                                    work).items():
                    instructions[(t,) + case] = ins

    med = {key: {f: median([r[key][f] for r in rounds]) for f in FIGURES} for key in rounds[0]}
    print(f"mesh link vs h2c (nghttp2), one connection, loopback, handler on the "
          f"{'I/O thread' if args.handler == 'inline' else 'worker thread'}; {args.seconds:g}s per "
          f"row, {len(rounds)} round(s), medians over rounds; cpu = CPU time per request")
    print(f"{'case':<12}{'transport':<10}{'req/s':>9}{'p50 us':>9}{'p99 us':>9}"
          f"{'cli cpu us':>11}{'srv cpu us':>11}{'cli csw':>8}{'srv csw':>8}"
          + (f"{'cli sys':>8}{'srv sys':>8}" if syscalls else ""))
    for size, conns in CASES:
        for t in TRANSPORTS:
            m = med[(t, size, conns)]
            line = (f"{size + ' c=' + str(conns):<12}{t:<10}{m['rps']:>9.0f}{m['p50_us']:>9.1f}"
                    f"{m['p99_us']:>9.1f}{m['client_cpu_us']:>11.2f}{m['server_cpu_us']:>11.2f}"
                    f"{m['client_switches']:>8.2f}{m['server_switches']:>8.2f}")
            if syscalls:
                c, s = syscalls[(t, size, conns)]
                line += f"{c:>8.2f}{s:>8.2f}"
            print(line)
    print("h2c / link (medians; below 1 means h2c is lower: faster for latency and CPU, slower "
          "for req/s)")
    ratios = {}
    for size, conns in CASES:
        link, h2 = med[("link", size, conns)], med[("h2c", size, conns)]
        cpu_link = link["client_cpu_us"] + link["server_cpu_us"]
        cpu_h2 = h2["client_cpu_us"] + h2["server_cpu_us"]
        r = {"rps": h2["rps"] / link["rps"], "p50": h2["p50_us"] / link["p50_us"],
             "p99": h2["p99_us"] / link["p99_us"], "cpu": cpu_h2 / cpu_link,
             "client_cpu": h2["client_cpu_us"] / link["client_cpu_us"],
             "server_cpu": h2["server_cpu_us"] / link["server_cpu_us"]}
        ratios[(size, conns)] = r
        # Paired by round: in how many rounds h2c took less CPU per request (both sides).
        wins = sum(1 for rr in rounds
                   if rr[("h2c", size, conns)]["client_cpu_us"]
                   + rr[("h2c", size, conns)]["server_cpu_us"]
                   < rr[("link", size, conns)]["client_cpu_us"]
                   + rr[("link", size, conns)]["server_cpu_us"])
        p50_wins = sum(1 for rr in rounds
                       if rr[("h2c", size, conns)]["p50_us"] < rr[("link", size, conns)]["p50_us"])
        print(f"{size + ' c=' + str(conns):<12}req/s {r['rps']:.2f}  p50 {r['p50']:.2f}  "
              f"p99 {r['p99']:.2f}  cpu/request {r['cpu']:.2f} (client {r['client_cpu']:.2f}, "
              f"server {r['server_cpu']:.2f}); rounds h2c used less CPU: {wins} of {len(rounds)}, "
              f"had the lower p50: {p50_wins} of {len(rounds)}")
    if instructions:
        print(f"user-space instructions per request (callgrind, {args.requests} requests per case)")
        print(f"{'case':<12}{'transport':<10}{'client':>10}{'server':>10}{'both':>10}"
              f"{'h2c/link':>10}")
        for size, conns in CASES:
            for t in TRANSPORTS:
                c, s = instructions[(t, size, conns)]
                lc, ls = instructions[("link", size, conns)]
                print(f"{size + ' c=' + str(conns):<12}{t:<10}{c:>10.0f}{s:>10.0f}{c + s:>10.0f}"
                      f"{(c + s) / (lc + ls):>10.2f}")
    result = [f"handler={args.handler}", f"rounds={len(rounds)}"]
    for size, conns in CASES:
        key = f"{size}_c{conns}"
        for t in TRANSPORTS:
            m = med[(t, size, conns)]
            result += [f"{t}_{key}_rps={m['rps']:.0f}", f"{t}_{key}_p50_us={m['p50_us']:.1f}",
                       f"{t}_{key}_p99_us={m['p99_us']:.1f}",
                       f"{t}_{key}_cpu_us={m['client_cpu_us'] + m['server_cpu_us']:.2f}"]
            if syscalls:
                c, s = syscalls[(t, size, conns)]
                result.append(f"{t}_{key}_syscalls={c + s:.2f}")
        if instructions:
            for t in TRANSPORTS:
                c, s = instructions[(t, size, conns)]
                result.append(f"{t}_{key}_instr={c + s:.0f}")
        r = ratios[(size, conns)]
        result += [f"h2c_vs_link_{key}_rps={r['rps']:.2f}", f"h2c_vs_link_{key}_p50={r['p50']:.2f}",
                   f"h2c_vs_link_{key}_cpu={r['cpu']:.2f}"]
    print("RESULT " + " ".join(result))


if __name__ == "__main__":
    main()
