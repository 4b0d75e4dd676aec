#!/usr/bin/env python3
"""Turns a results directory of bench/run.sh into a markdown table (stdout).

    report.py RUN [RUN ...]

Several directories (runs of one build, on one machine) are pooled: every repetition of every
run counts as one repetition, still paired with the other targets of its own run and repetition.
On a noisy machine this narrows what decides a verdict that three repetitions leave to chance.

Per scenario point and target, over the repetitions: the median requests/s, the median of the
per-repetition ratios to `direct` and to `nginx` (same repetition, so drift cancels), the median
p50 and p99 latency, the median CPU milliseconds per 1,000 requests of the target's processes,
and the largest peak RSS. Then the targets of issue 5, met or not.
"""
import glob, json, os, re, statistics, sys

runs = sys.argv[1:]
if not runs:
    sys.exit("usage: report.py RUN [RUN ...]")
rows = {}  # (scenario, conns) -> target -> (run index, rep) -> dict
paths = [(i, p) for i, run in enumerate(runs) for p in glob.glob(os.path.join(run, "raw", "S?-c*-*-r*.txt"))]
for i, path in paths:
    m = re.match(r"(S\d)-c(\d+)-(.+)-r(\d+)\.txt$", os.path.basename(path))
    if not m:
        continue
    s, c, t, rep = m.group(1), int(m.group(2)), m.group(3), (i, int(m.group(4)))
    text = open(path).read().strip()
    d = dict(kv.split("=", 1) for kv in text.split() if "=" in kv)
    req = int(d.get("requests", 0))
    dur = int(d.get("duration_us", 1)) / 1e6
    codes = d.get("codes", "")
    if "min_bytes" in d:
        # No per-status counts (bench/lib/req.lua): wrk's own count of statuses above 399, and
        # every answer at least min_bytes long, else none of them counts.
        ok = req - int(d.get("err_status", 0))
        if int(d.get("bytes", 0)) < req * int(d["min_bytes"]):
            ok = 0
    else:
        ok = sum(int(x.split(":")[1]) for x in codes.split(",") if x and x.split(":")[0].startswith("2"))
    errs = sum(int(d.get(k, 0)) for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    rows.setdefault((s, c), {}).setdefault(t, {})[rep] = {
        "rps": ok / dur if dur else 0, "requests": req, "ok": ok, "errors": errs + (req - ok),
        "p50": int(d.get("p50_us", 0)) / 1000, "p99": int(d.get("p99_us", 0)) / 1000,
        "cpu": int(d.get("cpu_ms", 0)) * 1000 / ok if ok and d.get("cpu_ms") else None,
        "fake_cpu": int(d.get("fake_cpu_ms", 0)) * 1000 / ok if ok else None,
        "user_cpu": int(d["user_ms"]) * 1000 / ok if ok and "user_ms" in d else None,
        "rss": int(d.get("peak_rss_kb", 0)) / 1024, "codes": codes,
        "rss_start": int(d.get("rss_start_kb", 0)) / 1024 if "rss_start_kb" in d else None,
        "gen_cpu": int(d["gen_cpu_ms"]) * 1000 / ok if ok and "gen_cpu_ms" in d else None,
        "ivcsw": int(d["ivcsw"]) * 1000 / ok if ok and "ivcsw" in d else None,
    }

ORDER = ["direct", "nginx", "official", "fal-proxy"]
med = lambda xs: statistics.median(xs) if xs else None

def ratio(s_c, t, ref):
    per = rows[s_c]
    rs = [per[t][r]["rps"] / per[ref][r]["rps"] for r in per.get(t, {})
          if ref in per and r in per[ref] and per[ref][r]["rps"] > 0]
    return med(rs)

def f(x, fmt="{:.0f}"):
    return "-" if x is None else fmt.format(x)

print("| scenario | conns | target | req/s | vs direct | vs nginx | p50 ms | p99 ms | CPU ms / 1k req | peak RSS MB | errors | reps |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
summary = {}
for s_c in sorted(rows, key=lambda k: (k[0], k[1])):
    per = rows[s_c]
    for t in ORDER:
        if t not in per:
            continue
        reps = per[t]
        v = lambda k: [reps[r][k] for r in reps if reps[r][k] is not None]
        cpu = med(v("cpu")) if t != "direct" else None
        rec = {"rps": med(v("rps")), "vs_direct": ratio(s_c, t, "direct"), "vs_nginx": ratio(s_c, t, "nginx"),
               "p50": med(v("p50")), "p99": med(v("p99")), "cpu": cpu,
               "rss": max(v("rss")) if t != "direct" and v("rss") else None,
               "errors": sum(v("errors")), "reps": len(reps)}
        summary[(s_c, t)] = rec
        print(f"| {s_c[0]} | {s_c[1]} | {t} | {f(rec['rps'])} | {f(rec['vs_direct'], '{:.2f}')} | "
              f"{f(rec['vs_nginx'], '{:.2f}')} | {f(rec['p50'], '{:.2f}')} | {f(rec['p99'], '{:.2f}')} | "
              f"{f(rec['cpu'], '{:.0f}')} | {f(rec['rss'], '{:.1f}')} | {rec['errors']} | {rec['reps']} |")

# What the other processes on the two cores spent, per target: the fake upstream (to show it
# is not the bottleneck), the load generator, and how often the target itself was preempted.
def per_target(title, key, fmt, targets=ORDER):
    lines = []
    for s_c in sorted(rows):
        parts = []
        for t in targets:
            if t in rows[s_c]:
                xs = [x[key] for x in rows[s_c][t].values() if x.get(key) is not None]
                if xs:
                    parts.append(f"{t} {f(med(xs), fmt)}")
        if parts:
            lines.append(f"- {s_c[0]} c={s_c[1]}: " + ", ".join(parts))
    if lines:
        print()
        print(title)
        print("\n".join(lines))
per_target("Fake upstream (nginx, one worker) CPU ms per 1,000 requests, median, per point and target:", "fake_cpu", "{:.0f}")
per_target("Load generator (wrk) CPU ms per 1,000 requests, median, per point and target:", "gen_cpu", "{:.0f}")
per_target("Involuntary context switches of the target per 1,000 requests (preempted while it had work), median:", "ivcsw", "{:.0f}", ORDER[1:])

# User and kernel parts of the targets' CPU (runs before the split was recorded have none).
split = []
for s_c in sorted(rows):
    parts = []
    for t in ORDER[1:]:
        reps = rows[s_c].get(t, {}).values()
        users = [x["user_cpu"] for x in reps if x["user_cpu"] is not None]
        totals = [x["cpu"] for x in reps if x["user_cpu"] is not None and x["cpu"] is not None]
        if users:
            u, c = med(users), med(totals)
            parts.append(f"{t} {u:.0f} user + {c - u:.0f} kernel")
    if parts:
        split.append(f"- {s_c[0]} c={s_c[1]}: " + ", ".join(parts))
if split:
    print()
    print("CPU ms per 1,000 requests split into user space and kernel, median, per point and target:")
    print("\n".join(split))

# Targets.
print()
print("### Targets (fal-proxy against nginx and the official proxy; medians of the repetitions)")
print()
def get(s, c, t, k):
    r = summary.get(((s, c), t))
    return None if r is None else r[k]
def check(name, value, limit, cmp, unit=""):
    if value is None or limit is None:
        print(f"- {name}: not measured")
        return
    ok = value <= limit if cmp == "<=" else value >= limit
    print(f"- {name}: {value:.2f}{unit} vs {cmp} {limit:.2f}{unit}: **{'met' if ok else 'NOT met'}**")
for (s, conns) in [("S1", (32, 256)), ("S4", (8, 32))]:
    for c in conns:
        fp, ng = ((s, c), "fal-proxy"), ((s, c), "nginx")
        if fp not in summary or ng not in summary:
            continue
        check(f"{s} c={c} CPU/request vs nginx", summary[fp]["cpu"] / summary[ng]["cpu"] if summary[ng]["cpu"] else None, 1.0, "<=", "x")
        check(f"{s} c={c} throughput vs nginx", summary[fp]["vs_nginx"], 1.0, ">=", "x")
        check(f"{s} c={c} p99 (ms)", summary[fp]["p99"], summary[ng]["p99"], "<=")
for c in (32, 256):
    fp, ng = (("S2", c), "fal-proxy"), (("S2", c), "nginx")
    if fp in summary and ng in summary and summary[ng]["cpu"]:
        check(f"S2 c={c} CPU/request vs nginx", summary[fp]["cpu"] / summary[ng]["cpu"], 1.5, "<=", "x")
for c in (8, 32):
    fp, ng = (("S3", c), "fal-proxy"), (("S3", c), "nginx")
    if fp in summary and ng in summary and summary[ng]["cpu"]:
        check(f"S3 c={c} CPU/request vs nginx", summary[fp]["cpu"] / summary[ng]["cpu"], 2.0, "<=", "x")
if (("S3", 32), "fal-proxy") in summary:
    check("S3 c=32 peak RSS (MB)", summary[(("S3", 32), "fal-proxy")]["rss"], 250, "<=")
    # The targets are restarted when the scenario changes, so the start of the point holds only
    # what S3's warm-up and its c=8 point left (allocator caches, that scenario's job records).
    per = rows[("S3", 32)]["fal-proxy"]
    grown = [(per[r]["rss"], per[r]["rss_start"]) for r in sorted(per) if per[r]["rss_start"]]
    if grown:
        print("- S3 c=32 peak RSS / RSS at the start of the point, per repetition (MB): "
              + ", ".join(f"{p:.0f} / {s0:.0f}" for p, s0 in grown)
              + " (the difference is what 32 concurrent 4 MB submits took; the start is what S3's"
              + " warm-up and c=8 point left)")
for s, conns in (("S1", (32, 256)), ("S2", (32, 256))):
    for c in conns:
        fp, of = (((s, c), "fal-proxy")), ((s, c), "official")
        if fp in summary and of in summary and summary[of]["rps"]:
            check(f"{s} c={c} throughput vs official", summary[fp]["rps"] / summary[of]["rps"], 10.0, ">=", "x")

def per_run(run):
    """S5 and the idle figures, which each run measures once."""
    s5 = os.path.join(run, "raw", "S5-fal-proxy.json")
    if os.path.exists(s5):
        r = json.load(open(s5))
        proc = dict(kv.split("=") for kv in open(os.path.join(run, "raw", "S5-fal-proxy-proc.txt")).read().split())
        print()
        print("### S5: status streams through fal-proxy")
        print()
        print(f"streams asked {r['streams']}, open {r['opened']}, failed {r['failed']} {r['failures'] or ''}, "
              f"ended early {r['ended_early']}, opened in {r['ramp_ms']} ms, held {r['hold_s']} s; "
              f"{r['events_measured']} events measured: delay p50 {f(r['p50_ms'], '{:.2f}')} ms, "
              f"p99 {f(r['p99_ms'], '{:.2f}')} ms, p99.9 {f(r['p999_ms'], '{:.2f}')} ms, max {f(r['max_ms'], '{:.1f}')} ms, "
              f"{100 * (r['within_50ms'] or 0):.2f}% within 50 ms; fal-proxy RSS idle {int(proc['idle_rss_kb']) / 1024:.1f} MB, "
              f"peak {int(proc['peak_rss_kb']) / 1024:.1f} MB; peak open fds {proc['peak_fds']}")
        check("S5 peak RSS (MB)", int(proc["peak_rss_kb"]) / 1024, 150, "<=")
        check("S5 event delay p99 (ms)", r["p99_ms"], 50, "<=")
        check("S5 streams held", r["opened"] - r["ended_early"], 10000, ">=")

    idle = os.path.join(run, "idle.txt")
    if os.path.exists(idle):
        lines = open(idle).read().splitlines()
        for line in lines:
            if line.startswith("fal_proxy_startup_ms:"):
                ms = [float(x) for x in line.split(":")[1].split()]
                if ms:
                    print(f"- start-up to ready (5 starts): {', '.join(f'{x:.0f}' for x in ms)} ms")
                    check("start-up to ready, worst of 5 (ms)", max(ms), 200, "<=")
            elif line.startswith("idle_rss_kb"):
                _, t, kb = line.split()
                if t == "fal-proxy":
                    check("fal-proxy idle RSS (MB)", int(kb) / 1024, 20, "<=")
                else:
                    print(f"- idle RSS of {t}: {int(kb) / 1024:.1f} MB")


for run in runs:
    if len(runs) > 1:
        print()
        print(f"#### {os.path.basename(os.path.normpath(run))}")
    per_run(run)
