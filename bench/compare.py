"""Build N run directories from one real run's manifests, then time
`distill compare` over them (median of 5) and a Python reader of the same files."""
import json, os, random, shutil, statistics, subprocess, sys, time, tomllib

bin_, src, root, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
shutil.rmtree(root, ignore_errors=True)
rng = random.Random(7)
info = json.load(open(os.path.join(src, "run.json")))
config = open(os.path.join(src, "config.resolved.toml")).read()
reports = []
for suite in os.listdir(os.path.join(src, "eval")) if os.path.isdir(os.path.join(src, "eval")) else []:
    reports.append((suite, open(os.path.join(src, "eval", suite, "report.json")).read()))
for i in range(n):
    dim, lr, seed = [8, 16, 32, 64][i % 4], [0.001, 0.005, 0.01, 0.05, 0.1][(i // 4) % 5], 42 + i // 20
    d = os.path.join(root, "sms_spam-bag", f"run-{i:04d}")
    os.makedirs(d)
    inf = dict(info, run_id=f"run-{i:04d}", metrics={k: v * (1 + rng.uniform(-0.02, 0.02)) for k, v in info["metrics"].items()})
    json.dump(inf, open(os.path.join(d, "run.json"), "w"), indent=2)
    c = config.replace("dim = 32", f"dim = {dim}").replace("lr = 0.005", f"lr = {lr}").replace("seed = 42", f"seed = {seed}")
    open(os.path.join(d, "config.resolved.toml"), "w").write(c)
    for suite, text in reports:
        os.makedirs(os.path.join(d, "eval", suite))
        open(os.path.join(d, "eval", suite, "report.json"), "w").write(text)

walls = []
for _ in range(5):
    t0 = time.perf_counter()
    r = subprocess.run([bin_, "compare", os.path.join(root, "sms_spam-bag"), "--format", "csv"], capture_output=True, text=True)
    walls.append(time.perf_counter() - t0)
    assert r.returncode == 0, r.stderr
rows = len(r.stdout.strip().splitlines()) - 1

t0 = time.perf_counter()
for name in sorted(os.listdir(os.path.join(root, "sms_spam-bag"))):
    d = os.path.join(root, "sms_spam-bag", name)
    json.load(open(os.path.join(d, "run.json")))
    tomllib.load(open(os.path.join(d, "config.resolved.toml"), "rb"))
    for suite, _ in reports:
        json.load(open(os.path.join(d, "eval", suite, "report.json")))
py = time.perf_counter() - t0

print(f"\n## Compare ({n} runs, {rows} rows after grouping seeds)\n")
print("| | seconds |")
print("|---|---:|")
print(f"| distill compare, whole command (median of 5) | {statistics.median(walls):.3f} |")
print(f"| Python: only reading the same files (json + tomllib) | {py:.3f} |")
print(f"\ntarget under 1 s: {'met' if statistics.median(walls) < 1 else 'NOT met'}")
