#!/usr/bin/python3
"""Cold start and idle memory of a hivemesh node with the shipped model repository, against
nginx (Debian's nginx-light, 2 workers) started the same way in the same run.

Cold start = from exec until the readiness endpoint answers 200 (polled every 0.5 ms).
Idle memory = resident set size (VmRSS) one second after ready, with no traffic; for nginx the
sum over its master and worker processes.

    bench/startup/bench_startup.py [--build build/release] [--runs 7]
"""
import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, start, timeout=20.0):
    while time.perf_counter() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.0005)
    raise RuntimeError(f"{url} not ready within {timeout}s")


def rss_kib(pid):
    total = 0
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                   text=True).stdout.split()]
    for p in pids:
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def measure(cmd, url_fmt):
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([c.format(port=port) for c in cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        ready = wait_ready(url_fmt.format(port=port), start)
        time.sleep(1.0)
        rss = rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return ready, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        # Its own state folder (as root the default is the machine's /var/lib/hivemesh).
        agent = [os.path.join(args.build, "hivemesh"), "agent", "--model-repository",
                 os.path.join(ROOT, "models"), "--http-address", "127.0.0.1:{port}",
                 "--log-level", "warn",
                 "--grpc-address", "off",  # REST only, as nginx serves HTTP only
                 "--insecure", "--state-dir", os.path.join(work, "state")]
        os.chmod(work, 0o755)  # nginx workers run as www-data and must read the payload
        os.makedirs(os.path.join(work, "www"))
        open(os.path.join(work, "www", "ready"), "w").write("ok")
        conf = os.path.join(work, "nginx.conf")
        nginx = ["/usr/sbin/nginx", "-c", conf, "-p", work]
        results = {"hivemesh": [], "nginx": []}
        for _ in range(args.runs):
            results["hivemesh"].append(measure(agent, "http://127.0.0.1:{port}/v2/health/ready"))
            port_holder = free_port()
            with open(conf, "w") as f:
                f.write(f"worker_processes 2; daemon off; pid {work}/nginx.pid; error_log {work}/e.log;\n"
                        f"events {{ worker_connections 1024; }}\n"
                        f"http {{ access_log off; server {{ listen 127.0.0.1:{port_holder}; root {work}/www; }} }}\n")
            results["nginx"].append(measure(nginx, f"http://127.0.0.1:{port_holder}/ready"))

    models = sorted(d for d in os.listdir(os.path.join(ROOT, "models"))
                    if os.path.isdir(os.path.join(ROOT, "models", d)))
    print(f"{args.runs} runs each; hivemesh serves {len(models)} models: {', '.join(models)}")
    print(f"{'server':<10}{'ready p50 ms':>14}{'ready max ms':>14}{'idle RSS MiB':>14}")
    summary = {}
    for name, runs in results.items():
        ready = [r[0] * 1e3 for r in runs]
        rss = [r[1] / 1024 for r in runs]
        summary[name] = (statistics.median(ready), max(ready), statistics.median(rss))
        print(f"{name:<10}{summary[name][0]:>14.1f}{summary[name][1]:>14.1f}{summary[name][2]:>14.1f}")
    h, n = summary["hivemesh"], summary["nginx"]
    print(f"hivemesh/nginx: cold start {h[0] / n[0]:.2f}, idle memory {h[2] / n[2]:.2f}")
    print(f"RESULT cold_start_ms={h[0]:.1f} cold_start_max_ms={h[1]:.1f} idle_rss_mib={h[2]:.1f} "
          f"nginx_cold_start_ms={n[0]:.1f} nginx_idle_rss_mib={n[2]:.1f} "
          f"start_ratio_vs_nginx={h[0] / n[0]:.2f} rss_ratio_vs_nginx={h[2] / n[2]:.2f}")


if __name__ == "__main__":
    main()
