#!/usr/bin/env python3
"""Runs one load point and measures the target's processes while it runs.

usage: measure.py --pids P1,P2 [--fake-pids F1,F2] --out FILE -- wrk ARGS...

Before the run: reads utime+stime of every pid (/proc/PID/stat) and resets their peak RSS
(`echo 5 > /proc/PID/clear_refs`). During it: samples the summed VmRSS every 100 ms. After it:
the CPU time spent (ms; user_ms is its user-space part), the peak RSS (the larger of the summed VmHWM and the largest summed
sample, kB). Writes the wrk result line plus these fields as one line of key=value to --out.
"""
import os, resource, subprocess, sys, threading, time

CLK = os.sysconf("SC_CLK_TCK")

def cpu_split(pid):
    """(utime, stime) of a process, in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]), int(fields[12])
    except OSError:
        return 0, 0

def cpu_ticks(pid):
    return sum(cpu_split(pid))

def user_ticks(pids):
    return sum(cpu_split(p)[0] for p in pids)

def switches(pids):
    """(voluntary, involuntary) context switches summed over every thread of the processes."""
    vol = inv = 0
    for p in pids:
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/status") as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches:"):
                            vol += int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches:"):
                            inv += int(line.split()[1])
            except OSError:
                pass
    return vol, inv

def status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

def main():
    args = sys.argv[1:]
    sep = args.index("--")
    opts, cmd = args[:sep], args[sep + 1:]
    o = dict(zip(opts[::2], opts[1::2]))
    pids = [p for p in o.get("--pids", "").split(",") if p]
    fake = [p for p in o.get("--fake-pids", "").split(",") if p]
    for p in pids:
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
    c0 = sum(cpu_ticks(p) for p in pids)
    u0 = user_ticks(pids)
    f0 = sum(cpu_ticks(p) for p in fake)
    s0 = switches(pids)
    rss_start = sum(status_kb(p, "VmRSS") for p in pids)
    peak = [rss_start]
    stop = threading.Event()
    def sample():
        while not stop.wait(0.1):
            peak[0] = max(peak[0], sum(status_kb(p, "VmRSS") for p in pids))
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    stop.set(); t.join()
    c1 = sum(cpu_ticks(p) for p in pids)
    u1 = user_ticks(pids)
    f1 = sum(cpu_ticks(p) for p in fake)
    s1 = switches(pids)
    gen = resource.getrusage(resource.RUSAGE_CHILDREN)
    hwm = sum(status_kb(p, "VmHWM") for p in pids)
    rss_end = sum(status_kb(p, "VmRSS") for p in pids)
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "requests=0"
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
    extra = (f" cpu_ms={(c1 - c0) * 1000 / CLK:.0f} user_ms={(u1 - u0) * 1000 / CLK:.0f}"
             f" fake_cpu_ms={(f1 - f0) * 1000 / CLK:.0f}"
             f" peak_rss_kb={max(hwm, peak[0])} rss_start_kb={rss_start} rss_end_kb={rss_end}"
             f" vcsw={s1[0] - s0[0]} ivcsw={s1[1] - s0[1]}"
             f" gen_cpu_ms={(gen.ru_utime + gen.ru_stime) * 1000:.0f}"
             f" wall_s={wall:.2f}")
    with open(o["--out"], "w") as f:
        f.write(line + extra + "\n")
    print(line + extra)

main()
