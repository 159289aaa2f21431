#!/usr/bin/python3
"""Serving throughput and latency of one hivemesh node, against nginx in the same run.

Runs `wrk` (keep-alive) against a real `hivemesh agent` serving the identity and vibration-anomaly
models with JSON requests, at concurrency 1 and 32, and against Debian's nginx-light serving a
static file of the same size as the identity response. Reports requests/s, p50/p99 latency as
wrk sees them, and the node's own overhead per request measured in-process (time in the node
minus the model's compute time, from the statistics endpoint).

    bench/serving/bench_serving.py [--build build/release] [--seconds 5]
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def parse_duration_us(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 1, "ms": 1e3, "s": 1e6}[unit]


def run_wrk(url, connections, seconds, workdir, body=None, headers=None):
    threads = 1 if connections == 1 else 2
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    if body is not None:
        script = os.path.join(workdir, "post.lua")
        with open(script, "w") as f:
            f.write('wrk.method = "POST"\n')
            f.write('wrk.headers["Content-Type"] = "application/json"\n')
            f.write("wrk.body = " + json.dumps(body) + "\n")
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = parse_duration_us(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = parse_duration_us(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses from {url}:\n{out}")
    return {"rps": rps, "p50_us": p50, "p99_us": p99, "requests": requests}


class Agent:
    def __init__(self, binary, workdir):
        self.port = free_port()
        self.log = open(os.path.join(workdir, f"agent-{self.port}.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "agent", "--model-repository", os.path.join(ROOT, "models"),
             "--http-address", f"127.0.0.1:{self.port}", "--log-level", "warn",
             "--grpc-address", "off", "--insecure",
             "--state-dir", os.path.join(workdir, f"state-{self.port}")],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_http(f"http://127.0.0.1:{self.port}/v2/health/ready")

    def overhead(self, model):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/models/{model}/stats") as r:
            stats = json.load(r)["model_stats"][0]
        o = stats["server_overhead"]
        inf = stats["inference_stats"]["compute_infer"]
        compute_us = inf["ns"] / max(1, inf["count"]) / 1e3
        return o["p50_ns"] / 1e3, o["p99_ns"] / 1e3, compute_us

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


class Nginx:
    def __init__(self, workdir, payload):
        self.port = free_port()
        root = os.path.join(workdir, "www")
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, "payload.json"), "w") as f:
            f.write(payload)
        conf = os.path.join(workdir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 2;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  keepalive_requests 100000000;
  server {{
    listen 127.0.0.1:{self.port};
    location / {{ root {root}; default_type application/json; }}
  }}
}}
""")
        self.proc = subprocess.Popen(["/usr/sbin/nginx", "-c", conf, "-p", workdir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{self.port}/payload.json")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    binary = os.path.join(args.build, "hivemesh")
    for tool in ("wrk", "/usr/sbin/nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: run scripts/install-deps.sh")

    identity_body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [16], "datatype": "FP32",
                                            "data": [float(i) / 8 for i in range(16)]}]})
    example = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tools", "gen_vibration_model.py"),
                              "--example", "fault"], capture_output=True, text=True, check=True).stdout
    results = {}
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o755)  # nginx workers run as www-data and must read the payload
        # The identity response, for an nginx payload of the same size.
        agent = Agent(binary, work)
        req = urllib.request.Request(f"http://127.0.0.1:{agent.port}/v2/models/identity/infer",
                                     data=identity_body.encode(), method="POST")
        with urllib.request.urlopen(req) as r:
            identity_response = r.read().decode()
        agent.stop()

        for model, body in (("identity", identity_body), ("vibration-anomaly", example)):
            for conns in (1, 32):
                agent = Agent(binary, work)
                url = f"http://127.0.0.1:{agent.port}/v2/models/{model}/infer"
                r = run_wrk(url, conns, args.seconds, work, body)
                r["overhead_p50_us"], r["overhead_p99_us"], r["compute_us"] = agent.overhead(model)
                agent.stop()
                results[(model, conns)] = r
        nginx = Nginx(work, identity_response)
        for conns in (1, 32):
            results[("nginx static", conns)] = run_wrk(
                f"http://127.0.0.1:{nginx.port}/payload.json", conns, args.seconds, work)
        nginx.stop()

    print(f"wrk keep-alive, {args.seconds}s per row; identity response {len(identity_response)} bytes "
          f"(nginx serves a static file of that size)")
    print(f"{'target':<20}{'conns':>6}{'req/s':>11}{'p50 us':>9}{'p99 us':>9}"
          f"{'compute us':>12}{'overhead p50':>14}{'overhead p99':>14}{'vs nginx':>10}")
    for (name, conns), r in results.items():
        ratio = r["rps"] / results[("nginx static", conns)]["rps"]
        print(f"{name:<20}{conns:>6}{r['rps']:>11.0f}{r['p50_us']:>9.0f}{r['p99_us']:>9.0f}"
              f"{r.get('compute_us', 0):>12.1f}{r.get('overhead_p50_us', 0):>14.1f}"
              f"{r.get('overhead_p99_us', 0):>14.1f}{ratio:>10.2f}")
    i1, i32 = results[("identity", 1)], results[("identity", 32)]
    v1, v32 = results[("vibration-anomaly", 1)], results[("vibration-anomaly", 32)]
    n1, n32 = results[("nginx static", 1)], results[("nginx static", 32)]
    print("RESULT "
          f"identity_c1_rps={i1['rps']:.0f} identity_c32_rps={i32['rps']:.0f} "
          f"identity_c1_p50_us={i1['p50_us']:.0f} identity_c1_p99_us={i1['p99_us']:.0f} "
          f"identity_c32_p50_us={i32['p50_us']:.0f} identity_c32_p99_us={i32['p99_us']:.0f} "
          f"overhead_c1_p50_us={i1['overhead_p50_us']:.1f} overhead_c1_p99_us={i1['overhead_p99_us']:.1f} "
          f"vibration_c1_rps={v1['rps']:.0f} vibration_c32_rps={v32['rps']:.0f} "
          f"vibration_overhead_c1_p50_us={v1['overhead_p50_us']:.1f} "
          f"nginx_c1_rps={n1['rps']:.0f} nginx_c32_rps={n32['rps']:.0f} "
          f"identity_vs_nginx_c1={i1['rps'] / n1['rps']:.2f} identity_vs_nginx_c32={i32['rps'] / n32['rps']:.2f}")


if __name__ == "__main__":
    main()
