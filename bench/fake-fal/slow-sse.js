// The slow status-stream upstream for scenario S5 (a fake of queue.fal.run's status stream).
// usage: node slow-sse.js   (env: PORT=9100, FAL_KEY=bench-fal-key, INTERVAL_MS=3000)
//
//   POST /fal-ai/nano-banana-pro/edit                         -> submit answer, fresh request_id
//   GET  /fal-ai/nano-banana-pro/requests/{id}/status/stream  -> text/event-stream that sends one
//        `data: {"status":"IN_PROGRESS",...,"sent_at":<ms since epoch, fractional>}` event every
//        INTERVAL_MS (first one after a random phase, so events are spread evenly), never ending.
// Every request must carry `Authorization: Key $FAL_KEY`. HTTP/1.1 only (fal-proxy's reqwest
// client cannot speak h2c to a plain-http upstream: no prior-knowledge option is enabled).
const http = require("http");
const crypto = require("crypto");
const { performance } = require("perf_hooks");

const port = Number(process.env.PORT || 9100);
const key = `Key ${process.env.FAL_KEY || "bench-fal-key"}`;
const interval = Number(process.env.INTERVAL_MS || 3000);
const Q = "https://queue.fal.run/fal-ai/nano-banana-pro/requests/";
const now = () => performance.timeOrigin + performance.now();
let open = 0;

const server = http.createServer((req, res) => {
  if (req.headers.authorization !== key) {
    res.writeHead(401, { "content-type": "application/json" });
    return res.end('{"detail":"Unauthorized"}');
  }
  const path = req.url.split("?")[0];
  if (req.method === "POST" && path === "/fal-ai/nano-banana-pro/edit") {
    req.resume();
    req.on("end", () => {
      const id = crypto.randomUUID();
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ request_id: id, response_url: Q + id, status_url: Q + id + "/status",
        cancel_url: Q + id + "/cancel", queue_position: 0, status: "IN_QUEUE" }));
    });
    return;
  }
  const m = /^\/fal-ai\/nano-banana-pro\/requests\/([^/]+)\/status\/stream$/.exec(path);
  if (req.method === "GET" && m) {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    res.flushHeaders();
    open++;
    let seq = 0, timer;
    const send = () => {
      res.write(`data: {"status":"IN_PROGRESS","request_id":"${m[1]}","logs":null,"seq":${seq++},"sent_at":${now().toFixed(3)}}\n\n`);
    };
    const first = setTimeout(() => { send(); timer = setInterval(send, interval); }, Math.random() * interval);
    res.on("close", () => { open--; clearTimeout(first); clearInterval(timer); });
    return;
  }
  res.writeHead(404, { "content-type": "application/json" });
  res.end('{"detail":"Not found"}');
});
server.keepAliveTimeout = 300000;
server.headersTimeout = 310000;
server.requestTimeout = 0;
server.maxConnections = 19000;
server.listen(port, "127.0.0.1", () => console.log(`slow SSE upstream on 127.0.0.1:${port}`));
setInterval(() => console.log(`open streams: ${open}`), 10000).unref();
