// The slow status-stream upstream for scenario S5 (a fake of queue.fal.run's status stream).
// usage: node slow-sse.js   (env: PORT=9100, FAL_KEY=bench-fal-key, INTERVAL_MS=3000)
//
//   POST /fal-ai/nano-banana-pro/edit                         -> submit answer, fresh request_id
//   GET  /fal-ai/nano-banana-pro/requests/{id}/status/stream  -> text/event-stream that sends one
//        `data: {"status":"IN_PROGRESS",...,"sent_at":<ms since epoch, fractional>}` event every
//        INTERVAL_MS (first one after a random phase, so events are spread evenly), never ending.
// Every request must carry `Authorization: Key $FAL_KEY`. HTTP/2 over cleartext (h2c, prior
// knowledge), as fal speaks HTTP/2 (by ALPN over TLS): the proxy's upstream streams share a few
// connections (fal-proxy: `fal.http2_prior_knowledge = true`) instead of one socket each.
const http2 = require("http2");
const crypto = require("crypto");
const { performance } = require("perf_hooks");

const port = Number(process.env.PORT || 9100);
const key = `Key ${process.env.FAL_KEY || "bench-fal-key"}`;
const interval = Number(process.env.INTERVAL_MS || 3000);
const Q = "https://queue.fal.run/fal-ai/nano-banana-pro/requests/";
const now = () => performance.timeOrigin + performance.now();
let open = 0;

const server = http2.createServer({
  // Streams per connection: the proxy multiplexes thousands of status streams on one connection.
  settings: { maxConcurrentStreams: 100000 },
}, (req, res) => {
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
    // Nothing ends these streams but the client.
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
server.setTimeout(0);
server.listen(port, "127.0.0.1", () => console.log(`slow SSE upstream on 127.0.0.1:${port}`));
let sessions = 0;
server.on("session", (session) => { sessions++; session.on("close", () => sessions--); });
setInterval(() => console.log(`open streams: ${open} on ${sessions} connection(s)`), 10000).unref();
