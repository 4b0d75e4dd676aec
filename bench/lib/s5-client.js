// Scenario S5 client: holds N status streams open through a proxy's /api/fal/proxy route and
// measures how late each event arrives compared with when the upstream sent it.
// usage: node s5-client.js URL N HOLD_S OUT_JSON   (env: BENCH_AUTH, H2=1 for h2c, SESSIONS=20,
//        RAMP_PER_S=2000)
// With H2=1 the streams are multiplexed over SESSIONS h2c connections (prior knowledge), so
// the client side needs few sockets; otherwise one HTTP/1.1 connection per stream.
const http = require("http");
const http2 = require("http2");
const fs = require("fs");
const { performance } = require("perf_hooks");

const [url, nArg, holdArg, outFile] = process.argv.slice(2);
const N = Number(nArg), HOLD = Number(holdArg) * 1000;
const auth = process.env.BENCH_AUTH || "";
const h2 = process.env.H2 === "1";
const SESSIONS = Number(process.env.SESSIONS || 20);
const RAMP = Number(process.env.RAMP_PER_S || 2000);
const now = () => performance.timeOrigin + performance.now();
const u = new URL(url);

function submit() {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ prompt: "a slow job to watch", image_urls: [
      "https://storage.googleapis.com/falserverless/example_inputs/nano-banana-edit-input.png"] });
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: "POST",
      headers: { "content-type": "application/json", authorization: auth,
        "x-fal-target-url": "https://queue.fal.run/fal-ai/nano-banana-pro/edit" } }, (res) => {
      let d = ""; res.on("data", (c) => (d += c));
      res.on("end", () => res.statusCode === 200 ? resolve(JSON.parse(d).request_id)
        : reject(new Error(`submit ${res.statusCode} ${d}`)));
    });
    req.on("error", reject); req.end(body);
  });
}

const lat = []; let opened = 0, failed = 0, events = 0, ended = 0, measuring = false;
const failures = {};
function onChunk(buf, state) {
  state.buf += buf;
  let i;
  while ((i = state.buf.indexOf("\n\n")) >= 0) {
    const ev = state.buf.slice(0, i); state.buf = state.buf.slice(i + 2);
    const m = /"sent_at":([0-9.]+)/.exec(ev);
    if (m) { events++; if (measuring) lat.push(now() - Number(m[1])); }
  }
}

(async () => {
  const id = await submit();
  const target = `https://queue.fal.run/fal-ai/nano-banana-pro/requests/${id}/status/stream`;
  const headers = { accept: "text/event-stream", authorization: auth, "x-fal-target-url": target };
  const sessions = [];
  if (h2) for (let i = 0; i < SESSIONS; i++) {
    const s = http2.connect(url, { settings: { initialWindowSize: 1 << 20 } });
    s.on("error", (e) => { failures["session:" + e.code] = (failures["session:" + e.code] || 0) + 1; });
    sessions.push(s);
  }
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const all = [];
  function open(k) {
    const state = { buf: "" };
    const fail = (why) => { failed++; failures[why] = (failures[why] || 0) + 1; };
    if (h2) {
      const st = sessions[k % SESSIONS].request({ ":method": "GET", ":path": u.pathname, ...headers });
      st.setEncoding("utf8");
      st.on("response", (h) => { if (h[":status"] === 200) opened++; else fail("status:" + h[":status"]); });
      st.on("data", (c) => onChunk(c, state));
      st.on("end", () => ended++);
      st.on("error", (e) => fail("stream:" + (e.code || e.message)));
      all.push(() => st.close());
    } else {
      const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, headers, agent }, (res) => {
        if (res.statusCode === 200) opened++; else fail("status:" + res.statusCode);
        res.setEncoding("utf8"); res.on("data", (c) => onChunk(c, state)); res.on("end", () => ended++);
      });
      req.on("error", (e) => fail("req:" + (e.code || e.message)));
      req.end();
      all.push(() => req.destroy());
    }
  }
  const t0 = now();
  for (let k = 0; k < N; k++) {
    open(k);
    if (k % 100 === 99) await new Promise((r) => setTimeout(r, 100000 / RAMP));
  }
  // Wait for all to be open (or failed), at most 60 s.
  while (opened + failed < N && now() - t0 < 60000) await new Promise((r) => setTimeout(r, 100));
  const rampMs = now() - t0;
  console.log(`opened ${opened}/${N} in ${rampMs.toFixed(0)} ms, failed ${failed}`);
  process.stdout.write(`READY ${opened}\n`);
  measuring = true;
  await new Promise((r) => setTimeout(r, HOLD));
  measuring = false;
  lat.sort((a, b) => a - b);
  const pct = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] : null);
  const res = { streams: N, opened, failed, failures, ended_early: ended, ramp_ms: Math.round(rampMs),
    hold_s: HOLD / 1000, events_measured: lat.length,
    p50_ms: pct(50), p99_ms: pct(99), p999_ms: pct(99.9), max_ms: lat.length ? lat[lat.length - 1] : null,
    within_50ms: lat.length ? lat.filter((x) => x <= 50).length / lat.length : null };
  fs.writeFileSync(outFile, JSON.stringify(res) + "\n");
  console.log(JSON.stringify(res));
  all.forEach((c) => c());
  sessions.forEach((s) => s.close());
  setTimeout(() => process.exit(0), 500);
})().catch((e) => { console.error(e); process.exit(1); });
