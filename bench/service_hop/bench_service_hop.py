#!/usr/bin/python3
"""The cost of reaching a service through the mesh, against nginx proxying to the same workload,
in the same run (docs/services.md, "Routing to services").

A secure mesh of two nodes: B (labelled role=backend) runs the workload, an nginx that answers
`GET /` with a few bytes, as a Deployment placed on it by hivemesh (the node starts and
supervises it); a Service `svc` selects it. wrk sends `GET /` with `Host: svc` at concurrency 1
and 32 to:

- the workload directly (the baseline);
- node A, which does not run it: client -> A -> B (a tunnel, mutual TLS) -> workload;
- node B, which runs it: client -> B -> workload;
- nginx proxying to the workload (HTTP/1.1 keep-alive upstream): client -> nginx -> workload;
- two nginx proxies doing what A and B do, the pair of proxies a mesh built by hand from
  sidecars has: client -> nginx F -> (TLS 1.3, each side's mesh certificate checked against the
  mesh's roots, keep-alive, session reuse) -> nginx R -> workload. F and R are two nginx
  processes, as A and B are two nodes (in one nginx, a worker could serve both ends of a hop).

The mesh's remote path (client -> A -> B) is set against the pair of nginx (the same two hops
and the same mutual TLS between them), its local path (client -> B) against the one nginx.

The added latency of a path = its p50/p99 minus the direct p50/p99 in the same round. The
ratios compare the added p50, and the paths' own p99 (a tail is not a sum: a path's p99 minus
the direct p99 of the same round can even be negative at c=32; both paths end at the same
workload). A's and B's I/O threads and each nginx's workers are the same number
(--proxy-threads, default 2).

    bench/service_hop/bench_service_hop.py [--build build/release] [--seconds 4] [--rounds 3]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "serving"))
sys.path.insert(0, os.path.join(ROOT, "bench", "hop_overhead"))
from bench_hop_overhead import hop_table, start_nginx  # noqa: E402
from bench_hop_tls import credentials, start_agent, token_from  # noqa: E402
from bench_serving import free_port, run_wrk  # noqa: E402

NGINX = "/usr/sbin/nginx"


def workload_conf(work, port):
    """The workload: an nginx that answers every GET with 32 bytes."""
    path = os.path.join(work, "workload.conf")
    with open(path, "w") as f:
        f.write(f"""worker_processes 1;
pid {work}/workload.pid;
error_log {work}/workload-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{ return 200 "0123456789abcdef0123456789abcde\\n"; }}
  }}
}}
""")
    return path


def proxy_conf(work, port, upstream, workers):
    path = os.path.join(work, "proxy.conf")
    with open(path, "w") as f:
        f.write(f"""worker_processes {workers};
daemon off;
pid {work}/proxy.pid;
error_log {work}/proxy-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream workload {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://workload;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
""")
    return path


def chain_confs(work, port, tls_port, upstream, workers, front, back, roots):
    """Two nginx, each a process tree of its own like node A and node B: F on `port` proxies over
    mutual TLS to R on `tls_port`, which proxies to the workload on `upstream`. F presents
    `front`'s mesh certificate and checks R's as `back`'s node name; R asks for and checks F's.
    Returns the paths of F's and R's configurations."""
    (f_cert, f_key), (r_cert, r_key, r_name) = front, back
    common = f"""worker_processes {workers};
daemon off;
events {{ worker_connections 4096; }}
"""
    paths = [os.path.join(work, "front.conf"), os.path.join(work, "rear.conf")]
    with open(paths[0], "w") as f:
        f.write(common + f"""pid {work}/front.pid;
error_log {work}/chain-error.log;
http {{
  access_log off;
  upstream rear {{ server 127.0.0.1:{tls_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass https://rear;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_certificate {f_cert};
      proxy_ssl_certificate_key {f_key};
      proxy_ssl_trusted_certificate {roots};
      proxy_ssl_verify on;
      proxy_ssl_verify_depth 4;
      proxy_ssl_name {r_name};
      proxy_ssl_session_reuse on;
    }}
  }}
}}
""")
    with open(paths[1], "w") as f:
        f.write(common + f"""pid {work}/rear.pid;
error_log {work}/chain-error.log;
http {{
  access_log off;
  upstream workload {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{tls_port} ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate {r_cert};
    ssl_certificate_key {r_key};
    ssl_client_certificate {roots};
    ssl_verify_client on;
    ssl_verify_depth 4;
    location / {{
      proxy_pass http://workload;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
""")
    return paths


def manifests(conf, port):
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: upstream
  annotations:
    hivemesh.io/node-selector: role=backend
spec:
  replicas: 1
  selector:
    matchLabels: {{app: upstream}}
  template:
    metadata:
      labels: {{app: upstream}}
    spec:
      containers:
      - name: upstream
        command: ["{NGINX}", "-c", "{conf}", "-g", "daemon off;"]
---
apiVersion: v1
kind: Service
metadata:
  name: svc
spec:
  selector: {{app: upstream}}
  ports:
  - port: 80
    targetPort: {port}
"""


def served_by(port, host="svc"):
    """The node that served `GET /` with Host: `host` at `port`, or why not."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.headers.get("Hivemesh-Served-By") if r.status == 200 else f"status {r.status}"
    except urllib.error.HTTPError as e:
        return f"status {e.code}: {e.read()[:200]!r}"
    except OSError as e:
        return str(e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--proxy-threads", type=int, default=2)
    args = ap.parse_args()
    for tool in ("wrk", NGINX):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: scripts/install-deps.sh installs it")
    binary = os.path.join(args.build, "hivemesh")
    procs = []
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o755)
        os.makedirs(os.path.join(work, "empty"))
        empty = os.path.join(work, "empty")
        try:
            b, b_http, b_gossip = start_agent(binary, work, "node-b", empty, args.proxy_threads,
                                              ["--labels", "role=backend"])
            procs.append(b)
            a, a_http, _ = start_agent(binary, work, "node-a", empty, args.proxy_threads,
                                        ["--labels", "role=front", "--join", b_gossip,
                                         "--token", token_from(binary, b_http)])
            procs.append(a)
            w_port = free_port()
            subprocess.run([binary, "apply", "-f", "-", "--node", f"127.0.0.1:{b_http}"],
                           input=manifests(workload_conf(work, w_port), w_port), text=True,
                           check=True, capture_output=True)
            deadline = time.time() + 30
            while served_by(a_http) != "node-b" or served_by(b_http) != "node-b":
                if time.time() > deadline:
                    for name in ("node-b", "node-a"):
                        with open(os.path.join(work, f"{name}.log")) as f:
                            print(f"--- {name}.log\n" + f.read()[-3000:], file=sys.stderr)
                    sys.exit("the service never answered by name through A and B "
                             f"(A: {served_by(a_http)}, B: {served_by(b_http)})")
                time.sleep(0.1)
            p_port = free_port()
            nginx = start_nginx(proxy_conf(work, p_port, w_port, args.proxy_threads), work, p_port)
            procs.append(nginx)
            c_port, c_tls = free_port(), free_port()
            roots = os.path.join(work, "roots.pem")
            shutil.copy(os.path.join(work, "state", "node-b", "mesh", "roots.pem"), roots)
            for conf in chain_confs(work, c_port, c_tls, w_port, args.proxy_threads,
                                    credentials(work, "node-a"),
                                    (*credentials(work, "node-b"), "node-b"), roots):
                procs.append(subprocess.Popen([NGINX, "-c", conf, "-p", work],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            deadline = time.time() + 10
            while (got := served_by(c_port)) is not None:
                if time.time() > deadline:
                    with open(os.path.join(work, "chain-error.log")) as f:
                        print(f.read()[-3000:], file=sys.stderr)
                    sys.exit(f"the pair of nginx never answered: {got}")
                time.sleep(0.1)
            paths = [("direct to workload", w_port), ("through A and B", a_http),
                     ("through B (local)", b_http), ("through nginx", p_port),
                     ("through nginx F and R", c_port)]
            rounds = []
            for n in range(args.rounds):
                r = {}
                order = paths[n % len(paths):] + paths[:n % len(paths)]
                for conns in (1, 32):
                    for label, port in order:
                        r[(label, conns)] = run_wrk(f"http://127.0.0.1:{port}/", conns,
                                                    args.seconds, work, headers={"Host": "svc"})
                rounds.append(r)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)

    print(f"GET / of 32 bytes, wrk keep-alive, {args.seconds}s per row, {args.rounds} round(s), "
          "medians over rounds; added = the row minus 'direct to workload' in the same round")
    added, results = hop_table(paths, rounds, "direct to workload")
    def figures(mesh, peer):
        """(mesh, peer) pairs at c=1 and c=32: the added p50, then the path's own p99."""
        return [(added[(mesh, c)][0], added[(peer, c)][0]) if i == 0 else
                (results[(mesh, c)]["p99_us"], results[(peer, c)]["p99_us"])
                for c in (1, 32) for i in (0, 1)]

    def ratios(mesh, peer):
        return [m / max(1.0, p) for m, p in figures(mesh, peer)]

    for mesh, peer in (("through A and B", "through nginx F and R"),
                       ("through B (local)", "through nginx")):
        f, r = figures(mesh, peer), ratios(mesh, peer)
        print(f"{mesh} vs {peer}: c=1 added p50 {f[0][0]:.0f} vs {f[0][1]:.0f} us ({r[0]:.2f}x), "
              f"p99 {f[1][0]:.0f} vs {f[1][1]:.0f} us ({r[1]:.2f}x); c=32 added p50 {f[2][0]:.0f} "
              f"vs {f[2][1]:.0f} us ({r[2]:.2f}x), p99 {f[3][0]:.0f} vs {f[3][1]:.0f} us "
              f"({r[3]:.2f}x); req/s "
              f"{results[(mesh, 32)]['rps']:.0f} vs {results[(peer, 32)]['rps']:.0f}")
    remote, local = ratios("through A and B", "through nginx F and R"), \
        ratios("through B (local)", "through nginx")
    m1, m32 = added[("through A and B", 1)], added[("through A and B", 32)]
    print("RESULT "
          f"mesh_added_c1_p50_us={m1[0]:.0f} "
          f"mesh_c1_p99_us={results[('through A and B', 1)]['p99_us']:.0f} "
          f"mesh_added_c32_p50_us={m32[0]:.0f} "
          f"mesh_c32_p99_us={results[('through A and B', 32)]['p99_us']:.0f} "
          f"remote_vs_nginx_pair_c1_p50={remote[0]:.2f} remote_vs_nginx_pair_c1_p99={remote[1]:.2f} "
          f"remote_vs_nginx_pair_c32_p50={remote[2]:.2f} remote_vs_nginx_pair_c32_p99={remote[3]:.2f} "
          f"local_vs_nginx_c1_p50={local[0]:.2f} local_vs_nginx_c1_p99={local[1]:.2f} "
          f"local_vs_nginx_c32_p50={local[2]:.2f} local_vs_nginx_c32_p99={local[3]:.2f} "
          f"mesh_c32_rps={results[('through A and B', 32)]['rps']:.0f} "
          f"nginx_pair_c32_rps={results[('through nginx F and R', 32)]['rps']:.0f}")


if __name__ == "__main__":
    main()
