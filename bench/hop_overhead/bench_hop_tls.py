#!/usr/bin/python3
"""The cost of one mutual-TLS mesh hop, against nginx proxying over TLS, in the same run.

A secure mesh of two nodes: node B creates it and serves the identity model; node A joins it
with a token, does not host the model and forwards every request to B over a mesh link that is
TLS 1.3 with both certificates checked (docs/identity.md). nginx-light runs as a reverse proxy in
front of the same B over TLS 1.3 with a client certificate (A's, so B checks it as it checks A),
upstream keep-alive and `proxy_ssl_session_reuse`. wrk drives the same identity JSON request at
concurrency 1 and 32 against: B directly (plain), A (one mTLS hop) and nginx (one TLS hop). The
added latency of a hop = its p50/p99 minus the direct p50/p99 in the same round. A's I/O threads
and nginx's workers are the same number (--proxy-threads, default 2).

Then:
- new-connection handshakes: `openssl s_time` (two clients at once, each presenting A's
  certificate) against B's port and against an nginx TLS server with B's certificate and key
  (asking for a client certificate too), full handshakes (-new) and resumed ones (-reuse): the
  connections per second, and the server's CPU time per handshake (the rate also depends on the
  clients, which share the cores);
- idle memory: a secure node alone against an insecure one (the same models), VmRSS after a few
  seconds idle.

    bench/hop_overhead/bench_hop_tls.py [--build build/release] [--seconds 4] [--rounds 3]
                                        [--proxy-threads 2]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "serving"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_hop_overhead import (HOP_BODY, hop_table, run_rounds, start_nginx,  # noqa: E402
                                wait_forwarded)
from bench_serving import free_port, wait_http  # noqa: E402


def start_agent(binary, work, name, repo, threads, args=()):
    http, gossip = free_port(), free_port()
    cmd = [binary, "agent", "--node-name", name, "--model-repository", repo,
           "--http-address", f"127.0.0.1:{http}", "--gossip-address", f"127.0.0.1:{gossip}",
           "--http-threads", str(threads), "--log-level", os.environ.get("HIVEMESH_BENCH_LOG", "warn"), "--grpc-address", "off",
           "--state-dir", os.path.join(work, "state", name), *args]
    log = open(os.path.join(work, f"{name}.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{http}/v2/health/ready")
    return proc, http, f"127.0.0.1:{gossip}"


def token_from(binary, http):
    out = subprocess.run([binary, "token", "create", "--node", f"127.0.0.1:{http}"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def credentials(work, name):
    """(certificate chain path, key path) of a node, copied where nginx may read them."""
    state = os.path.join(work, "state", name)
    cert, key = os.path.join(work, f"{name}.pem"), os.path.join(work, f"{name}.key")
    shutil.copy(os.path.join(state, "mesh", "node.pem"), cert)
    shutil.copy(os.path.join(state, "node.key"), key)
    os.chmod(key, 0o644)
    return cert, key


def write_nginx_conf(work, proxy_port, tls_port, b_http, workers, client, server):
    """nginx: a reverse proxy on `proxy_port` to node B over TLS 1.3 with `client`'s certificate,
    and a TLS server on `tls_port` with `server`'s certificate (for handshake rates)."""
    path = os.path.join(work, "nginx-tls.conf")
    with open(path, "w") as f:
        f.write(f"""worker_processes {workers};
daemon off;
pid {work}/nginx-tls.pid;
error_log {work}/nginx-tls-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream node_b {{ server 127.0.0.1:{b_http}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{proxy_port};
    location / {{
      proxy_pass https://node_b;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_certificate {client[0]};
      proxy_ssl_certificate_key {client[1]};
      proxy_ssl_session_reuse on;
    }}
  }}
  server {{
    listen 127.0.0.1:{tls_port} ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate {server[0]};
    ssl_certificate_key {server[1]};
    ssl_verify_client optional_no_ca;
    ssl_session_tickets on;
    location / {{ return 404 "{{}}"; }}
  }}
}}
""")
    return path


def cpu_seconds(pids):
    """User and system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def handshakes(port, seconds, client, reuse, server_pids):
    """(connections per second, server CPU microseconds per connection) for two `openssl
    s_time` clients at once against 127.0.0.1:port, each connection a full handshake (-new) or
    a resumed one (-reuse). The rate depends on the clients too (they share the cores); the
    server's CPU per handshake is its own."""
    cmd = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-time", str(seconds),
           "-cert", client[0], "-key", client[1], "-reuse" if reuse else "-new"]
    before, started = cpu_seconds(server_pids), time.monotonic()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    connections = 0
    for p in procs:
        out = p.communicate()[0]
        m = re.search(r"(\d+) connections in [\d.]+s", out)
        if not m:
            sys.exit(f"openssl s_time gave no count against port {port}:\n{out}")
        connections += int(m[1])
    took, used = time.monotonic() - started, cpu_seconds(server_pids) - before
    return connections / took, used * 1e6 / max(1, connections)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read())[1]) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--proxy-threads", type=int, default=2,
                    help="I/O threads of node A and nginx worker processes (the same for both)")
    args = ap.parse_args()
    for tool in ("wrk", "openssl", "/usr/sbin/nginx"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: scripts/install-deps.sh installs it")
    binary = os.path.join(args.build, "hivemesh")
    body = HOP_BODY
    procs = []
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o755)
        try:
            os.makedirs(os.path.join(work, "empty"))
            models = os.path.join(ROOT, "models")
            b, b_http, b_gossip = start_agent(binary, work, "node-b", models, 2,
                                              ["--models", "identity"])
            procs.append(b)
            a, a_http, _ = start_agent(binary, work, "node-a", os.path.join(work, "empty"),
                                        args.proxy_threads,
                                        ["--join", b_gossip, "--token", token_from(binary, b_http)])
            procs.append(a)
            wait_forwarded(a_http, body, "node-b")
            client, server = credentials(work, "node-a"), credentials(work, "node-b")
            proxy_port, tls_port = free_port(), free_port()
            conf = write_nginx_conf(work, proxy_port, tls_port, b_http, args.proxy_threads,
                                    client, server)
            nginx = start_nginx(conf, work, proxy_port)
            procs.append(nginx)

            paths = [("direct to B", b_http), ("through A (mTLS hop)", a_http),
                     ("through nginx (TLS)", proxy_port)]
            rounds = run_rounds(paths, args.rounds, args.seconds, work, body)

            shakes = {}
            nginx_workers = subprocess.run(["pgrep", "-P", str(nginx.pid)], capture_output=True,
                                           text=True).stdout.split()
            for reuse in (False, True):
                for label, port, pids in (("node B", b_http, [b.pid]),
                                          ("nginx", tls_port, nginx_workers)):
                    shakes[(label, reuse)] = handshakes(port, args.seconds, client, reuse, pids)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)

        # Idle memory: the same node, secure and insecure, alone.
        idle = {}
        for label, extra in (("insecure", ["--insecure"]), ("secure", [])):
            node, _, _ = start_agent(binary, work, f"idle-{label}", models, 2,
                                     ["--models", "identity", *extra])
            time.sleep(5)
            idle[label] = rss_mib(node.pid)
            node.terminate()
            node.wait(timeout=30)

    print(f"identity model, wrk keep-alive, {args.seconds}s per row, {args.rounds} round(s), "
          "medians over rounds; a hop = the row minus 'direct to B' in the same round")
    added, results = hop_table(paths, rounds, "direct to B")
    m1, n1 = added[("through A (mTLS hop)", 1)], added[("through nginx (TLS)", 1)]
    m32, n32 = added[("through A (mTLS hop)", 32)], added[("through nginx (TLS)", 32)]
    print(f"mTLS mesh hop vs nginx TLS hop: c=1 p50 {m1[0]:.0f} vs {n1[0]:.0f} us, p99 "
          f"{m1[1]:.0f} vs {n1[1]:.0f} us; c=32 p50 {m32[0]:.0f} vs {n32[0]:.0f} us, p99 "
          f"{m32[1]:.0f} vs {n32[1]:.0f} us")
    for reuse in (False, True):
        (ours, ours_cpu), (theirs, theirs_cpu) = shakes[("node B", reuse)], shakes[("nginx", reuse)]
        print(f"{'resumed' if reuse else 'full'} TLS handshakes, 2 clients: node {ours:.0f}/s at "
              f"{ours_cpu:.0f} us of CPU each, nginx {theirs:.0f}/s at {theirs_cpu:.0f} us "
              f"(rate ratio {ours / theirs:.2f}, CPU ratio {ours_cpu / theirs_cpu:.2f})")
    print(f"idle RSS: insecure {idle['insecure']:.1f} MiB, secure {idle['secure']:.1f} MiB "
          f"(+{idle['secure'] - idle['insecure']:.1f} MiB)")
    print("RESULT "
          f"tls_hop_c1_p50_us={m1[0]:.0f} tls_hop_c1_p99_us={m1[1]:.0f} "
          f"nginx_tls_hop_c1_p50_us={n1[0]:.0f} nginx_tls_hop_c1_p99_us={n1[1]:.0f} "
          f"tls_hop_c32_p50_us={m32[0]:.0f} tls_hop_c32_p99_us={m32[1]:.0f} "
          f"nginx_tls_hop_c32_p50_us={n32[0]:.0f} nginx_tls_hop_c32_p99_us={n32[1]:.0f} "
          f"mesh_c32_rps={results[('through A (mTLS hop)', 32)]['rps']:.0f} "
          f"nginx_c32_rps={results[('through nginx (TLS)', 32)]['rps']:.0f} "
          f"handshakes_per_s={shakes[('node B', False)][0]:.0f} "
          f"nginx_handshakes_per_s={shakes[('nginx', False)][0]:.0f} "
          f"handshake_cpu_us={shakes[('node B', False)][1]:.0f} "
          f"nginx_handshake_cpu_us={shakes[('nginx', False)][1]:.0f} "
          f"resumed_per_s={shakes[('node B', True)][0]:.0f} "
          f"nginx_resumed_per_s={shakes[('nginx', True)][0]:.0f} "
          f"resumed_cpu_us={shakes[('node B', True)][1]:.0f} "
          f"nginx_resumed_cpu_us={shakes[('nginx', True)][1]:.0f} "
          f"idle_rss_insecure_mib={idle['insecure']:.1f} idle_rss_secure_mib={idle['secure']:.1f} "
          f"idle_rss_delta_mib={idle['secure'] - idle['insecure']:.1f}")


if __name__ == "__main__":
    main()
