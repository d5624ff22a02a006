"""Teacher-collection benchmark (see bench/teach.sh).

1. Client overhead: an instant-answer OpenAI-compatible endpoint
   (distill-testkit instant, Rust, answers from memory). distill teach records
   each request's latency (send -> parsed response); the peer is Python
   `requests` with a keep-alive Session posting the same body. Median and p99,
   and the ratio.
2. Concurrency: distill teach against llama-server --parallel 4 (SmolLM2-135M)
   at concurrency 4 and 1: requests in flight (utilisation = busy request time /
   (concurrency x wall)), throughput, and the speed-up.
"""
import json, os, signal, statistics, subprocess, sys, time

bin_, testkit, out, n, llama_n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
os.makedirs(out, exist_ok=True)
CONFIG = "configs/teacher/sms_spam-smollm2.toml"


def server(args):
    p = subprocess.Popen([testkit] + args, stdout=subprocess.PIPE, text=True, start_new_session=True)
    url = p.stdout.readline().strip()
    if not url:
        sys.exit(f"{testkit} {args} did not start")
    return p, url


def stop(p):
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


def teach(url, model, limit, concurrency, name):
    dest = os.path.join(out, name)
    subprocess.run(["rm", "-rf", dest], check=True)
    sets = [f'limit={limit}', f'teacher.base-url="{url}"', f'teacher.model="{model}"',
            'teacher.cache=false', f'teacher.concurrency={concurrency}']
    cmd = [bin_, "teach", CONFIG, "--out", dest]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(r.stderr)
    m = json.load(open(os.path.join(dest, "teacher.json")))
    lat = [json.loads(l)["latency_ms"] for l in open(os.path.join(dest, "logs.jsonl"))]
    inflight = [l for l in r.stderr.splitlines() if "in flight at most" in l]
    return m, sorted(lat), wall, (inflight[-1] if inflight else "")


def pct(xs, q):
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# 1. Client overhead.
p, url = server(["instant"])
try:
    m, lat, wall, _ = teach(url, "instant", n, 1, "instant")
    body = json.load(open(os.path.join(out, "instant", "teacher.json")))
    import requests
    # The same request body distill sends (messages from the first row's prompt).
    payload = {"model": "instant", "messages": [{"role": "user", "content": "Ok lar... Joking wif u oni..."}],
               "temperature": 0.0, "max_tokens": 4, "logprobs": True, "top_logprobs": 20, "seed": 17}
    s = requests.Session()
    peer = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = s.post(url + "/chat/completions", json=payload, timeout=30)
        r.json()
        peer.append((time.perf_counter() - t0) * 1e3)
    peer.sort()
finally:
    stop(p)
runs = m["last_run"]
print(f"\n## Client overhead per request, instant endpoint, {n} requests, concurrency 1\n")
print("| client | median ms | p99 ms | requests/s (whole run) |")
print("|---|---:|---:|---:|")
print(f"| distill teach | {statistics.median(lat):.3f} | {pct(lat, .99):.3f} | {runs['requests_per_s']:.0f} |")
print(f"| Python requests (Session) | {statistics.median(peer):.3f} | {pct(peer, .99):.3f} | {1e3 / statistics.mean(peer):.0f} |")
print(f"\nmedian ratio requests/distill: {statistics.median(peer) / statistics.median(lat):.1f}x; "
      f"distill end to end (dataset load, prompt, parse, log write): {wall / n * 1e3:.3f} ms per row")

# 2. Concurrency against llama-server --parallel 4.
p, url = server(["llama", "4"])
try:
    m4, lat4, wall4, line4 = teach(url, "smollm2-135m", llama_n, 4, "llama-c4")
    m1, lat1, wall1, line1 = teach(url, "smollm2-135m", llama_n, 1, "llama-c1")
finally:
    stop(p)
print(f"\n## llama-server --parallel 4 (SmolLM2-135M, 1 thread), {llama_n} rows\n")
print("| concurrency | requests/s | utilisation | max in flight | median latency ms |")
print("|---:|---:|---:|---|---:|")
for c, mm, lat, line in [(4, m4, lat4, line4), (1, m1, lat1, line1)]:
    r = mm["last_run"]
    print(f"| {c} | {r['requests_per_s']:.2f} | {r['utilisation']:.2f} | {line.split('in flight at most ')[-1].split(' (')[0]} | {statistics.median(lat):.0f} |")
print(f"\nthroughput concurrency 4 / 1: {m4['last_run']['requests_per_s'] / m1['last_run']['requests_per_s']:.2f}x")
