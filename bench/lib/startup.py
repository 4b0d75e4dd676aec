#!/usr/bin/env python3
"""Starts a server and measures start-up to ready.

usage: startup.py URL LOGFILE -- CMD ARGS...
Spawns CMD (stdout+stderr to LOGFILE), polls URL (HTTP GET over a fresh TCP connection every
millisecond) until it answers 200, and prints "PID MS" (MS: spawn to the first 200). The server
keeps running after this script exits. Gives up after 30 s.

The server gets a session of its own, as nginx has once it daemonizes: with the kernel's
autogroup scheduling (kernel.sched_autogroup_enabled = 1) each session is one scheduling group,
so a server left in the benchmark's session would share one group's CPU with the load generator.
"""
import http.client, subprocess, sys, time, urllib.parse

url, log = sys.argv[1], sys.argv[2]
cmd = sys.argv[sys.argv.index("--") + 1:]
u = urllib.parse.urlsplit(url)
out = open(log, "ab")
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
while True:
    if p.poll() is not None:
        print(f"{p.pid} -1")
        sys.exit(1)
    try:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=1)
        c.request("GET", u.path or "/")
        if c.getresponse().status == 200:
            break
    except OSError:
        pass
    if time.monotonic() - t0 > 30:
        print(f"{p.pid} -1")
        sys.exit(1)
    time.sleep(0.001)
print(f"{p.pid} {(time.monotonic() - t0) * 1000:.1f}")
