// The official proxy as a benchmark target: @fal-ai/server-proxy (Express adapter) as its README
// shows it, on 127.0.0.1:$PORT. Its own checks stay as shipped: the default target-URL patterns,
// the optional endpoint allowlist (empty), its authentication default (unauthenticated requests
// allowed, FAL_KEY from the environment, a client Authorization header passed through).
//
// Redirecting its upstream to the fake: the proxy calls the global `fetch` with the
// x-fal-target-url itself (https://queue.fal.run/...). bench/official/redirect.js, loaded with
// `node --require ./redirect.js server.js`, wraps globalThis.fetch so that a URL starting with
// https://queue.fal.run/ or https://fal.run/ is fetched from $FAL_FAKE_URL (http://127.0.0.1:9000)
// instead, same path, method, headers and body. Nothing else in the proxy is changed.
//
// The only non-default setting: express.json's body limit is raised from 100 kB to 32 MB, or the
// 4 MB submits of scenario S3 would be refused with 413 before reaching the proxy.
const express = require("express");
const { createHandler, route } = require("@fal-ai/server-proxy/express");

const app = express();
app.use(express.json({ limit: "32mb" }));
app.all(route, createHandler());

const port = Number(process.env.PORT || 8082);
app.listen(port, "127.0.0.1", () => {
  console.log(`official proxy listening on 127.0.0.1:${port}${route}`);
});
