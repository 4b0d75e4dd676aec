// The official @fal-ai/client, bundled for the browser, in Chromium, from a page on another
// origin than the proxy (so every call is cross-origin and preflighted), and from a second origin
// the proxy does not allow (the browser must refuse the call).
//
// Run: node --test browser.test.mjs. Chromium: CHROMIUM_BIN, default /usr/bin/chromium.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import esbuild from "esbuild";
import { EDIT, HERE, TEXT_TO_IMAGE, launchChromium, makePng, scrubFalEnv, startProxy, startStaticServer, within } from "./harness.mjs";

const TEST_TIMEOUT = 25_000;
const REQUEST_ID = /^[0-9a-zA-Z-]{8,}$/;

scrubFalEnv();

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>fal-proxy compat</title>
<script src="/fal-client.js"></script></head>
<body><p>@fal-ai/client compatibility page</p></body></html>`;

let proxy;
let allowedPage;
let refusedPage;
let browser;

before(async () => {
  // The installed client, bundled for browsers, as an app would ship it.
  const bundle = await within(
    30_000,
    "esbuild bundle of @fal-ai/client",
    esbuild.build({
      stdin: { contents: 'export * from "@fal-ai/client";', resolveDir: HERE, loader: "js" },
      bundle: true,
      format: "iife",
      globalName: "falClient",
      platform: "browser",
      target: "es2020",
      write: false,
      logLevel: "silent",
    }),
  );
  const routes = {
    "/": { type: "text/html; charset=utf-8", body: PAGE },
    "/fal-client.js": { type: "text/javascript; charset=utf-8", body: bundle.outputFiles[0].text },
  };
  allowedPage = await startStaticServer(routes);
  refusedPage = await startStaticServer(routes);
  proxy = await startProxy({ allowedOrigins: [allowedPage.origin], queueSeconds: 0.5, progressSeconds: 1.0 });
  // playwright-core launches with a fresh temporary profile (--user-data-dir) and removes it on close.
  browser = await launchChromium();
});

after(async () => {
  await Promise.allSettled([
    browser ? within(10_000, "browser close", browser.close()) : null,
    proxy?.stop(),
    allowedPage?.close(),
    refusedPage?.close(),
  ]);
});

/**
 * Opens the page served by `server` in a fresh browser context and runs `fn(args)` in it, where
 * the bundled client is the global `falClient`. Returns what `fn` returns (plain JSON).
 */
async function inPage(server, fn, args) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TEST_TIMEOUT - 5_000);
  const problems = [];
  page.on("pageerror", (error) => problems.push(String(error)));
  try {
    await page.goto(`${server.origin}/`, { waitUntil: "load" });
    await page.waitForFunction(() => typeof window.falClient?.createFalClient === "function");
    const result = await within(
      TEST_TIMEOUT - 4_000,
      "the page script",
      page.evaluate(fn, args),
    );
    assert.deepEqual(problems, [], "uncaught errors in the page");
    return result;
  } finally {
    await context.close().catch(() => {});
  }
}

/** Common page arguments: where the proxy is, the client key, a small PNG. */
function pageArgs(extra = {}) {
  return {
    proxyUrl: proxy.proxyUrl,
    key: proxy.key,
    pngBase64: makePng(8, 8).toString("base64"),
    EDIT,
    TEXT_TO_IMAGE,
    ...extra,
  };
}

/** The proxy's log lines written after `from` (an index into logs()). */
const logsSince = (from) => proxy.logs().slice(from);

test("browser: submit + status (logs) + result across origins; requestId readable", { timeout: TEST_TIMEOUT }, async () => {
  const mark = proxy.logs().length;
  const out = await inPage(
    allowedPage,
    async ({ proxyUrl, key, pngBase64, EDIT }) => {
      const fal = falClient.createFalClient({ proxyUrl, credentials: key, suppressLocalCredentialsWarning: true });
      const submitted = await fal.queue.submit(EDIT, {
        input: { prompt: "a red fox in fresh snow", image_urls: [`data:image/png;base64,${pngBase64}`] },
      });
      const requestId = submitted.request_id;
      const seen = [];
      let status;
      const deadline = Date.now() + 10_000;
      do {
        status = await fal.queue.status(EDIT, { requestId, logs: true });
        seen.push(status.status);
        if (status.status !== "COMPLETED") await new Promise((r) => setTimeout(r, 150));
      } while (status.status !== "COMPLETED" && Date.now() < deadline);
      const result = await fal.queue.result(EDIT, { requestId });
      const image = await fetch(result.data.images[0].url);
      return {
        requestId,
        seen,
        logs: status.logs?.length ?? 0,
        resultRequestId: result.requestId,
        images: result.data.images.length,
        imageStatus: image.status,
        imageType: image.headers.get("content-type"),
      };
    },
    pageArgs(),
  );
  assert.match(out.requestId, REQUEST_ID);
  assert.equal(out.seen.at(-1), "COMPLETED", out.seen.join(", "));
  assert.ok(out.logs > 0, "no logs in the completed status");
  // Only readable when the proxy lists x-fal-request-id in Access-Control-Expose-Headers.
  assert.equal(out.resultRequestId, out.requestId);
  assert.equal(out.images, 1);
  assert.equal(out.imageStatus, 200);
  assert.equal(out.imageType, "image/png");

  // The browser really preflighted the cross-origin calls, and the proxy allowed them.
  const lines = logsSince(mark);
  const preflights = lines.filter((l) => l.method === "OPTIONS");
  assert.ok(preflights.length > 0, "no CORS preflight reached the proxy");
  assert.ok(preflights.every((l) => l.status === 204), JSON.stringify(preflights));
  assert.ok(lines.some((l) => l.method === "POST" && l.route === "submit" && l.status === 200 && l.client === "compat"));
});

test("browser: subscribe in streaming mode across origins", { timeout: TEST_TIMEOUT }, async () => {
  const out = await inPage(
    allowedPage,
    async ({ proxyUrl, key, TEXT_TO_IMAGE }) => {
      const fal = falClient.createFalClient({ proxyUrl, credentials: key, suppressLocalCredentialsWarning: true });
      const updates = [];
      let enqueued = null;
      const result = await fal.subscribe(TEXT_TO_IMAGE, {
        input: { prompt: "a lantern in the fog" },
        mode: "streaming",
        logs: true,
        onEnqueue: (id) => {
          enqueued = id;
        },
        onQueueUpdate: (u) => updates.push({ at: Date.now(), status: u.status, logs: u.logs?.length ?? 0 }),
      });
      return { enqueued, updates, requestId: result.requestId, images: result.data.images.length };
    },
    pageArgs(),
  );
  assert.match(out.enqueued ?? "", REQUEST_ID);
  assert.equal(out.requestId, out.enqueued);
  assert.equal(out.images, 1);
  const statuses = out.updates.map((u) => u.status);
  assert.ok(out.updates.length >= 3, statuses.join(", "));
  assert.equal(statuses.at(-1), "COMPLETED");
  assert.ok(statuses.includes("IN_PROGRESS"), statuses.join(", "));
  const spread = out.updates.at(-1).at - out.updates[0].at;
  assert.ok(spread >= 700, `all events arrived within ${spread} ms: the stream was buffered`);
  assert.ok(out.updates.at(-1).logs > 0, "no logs accumulated from the stream");
});

test("browser: storage.upload, round trip, then a submit using the uploaded file", { timeout: TEST_TIMEOUT }, async () => {
  const mark = proxy.logs().length;
  const out = await inPage(
    allowedPage,
    async ({ proxyUrl, key, pngBase64, EDIT }) => {
      const fal = falClient.createFalClient({ proxyUrl, credentials: key, suppressLocalCredentialsWarning: true });
      const png = Uint8Array.from(atob(pngBase64), (c) => c.charCodeAt(0));
      const url = await fal.storage.upload(new File([png], "compat-dot.png", { type: "image/png" }));
      const stored = await fetch(url);
      const back = new Uint8Array(await stored.arrayBuffer());
      const same = back.length === png.length && back.every((b, i) => b === png[i]);
      let refused = null;
      let imageRef = url;
      if (!url.startsWith("https://")) {
        // The fake's file URLs are plain http://, which the proxy's policy refuses for image_urls.
        try {
          await fal.queue.submit(EDIT, { input: { prompt: "use my upload", image_urls: [url] } });
        } catch (e) {
          refused = {
            name: e.name,
            isValidation: e instanceof falClient.ValidationError,
            fields: e.fieldErrors?.map((f) => f.loc.slice(0, 2).join(".")),
          };
        }
        let binary = "";
        for (const b of back) binary += String.fromCharCode(b);
        imageRef = `data:image/png;base64,${btoa(binary)}`;
      }
      const result = await fal.subscribe(EDIT, {
        input: { prompt: "use my upload", image_urls: [imageRef] },
        pollInterval: 200,
      });
      return { url, storedStatus: stored.status, same, refused, requestId: result.requestId, images: result.data.images.length };
    },
    pageArgs(),
  );
  assert.ok(out.url.startsWith(`${proxy.origin}/_mock/files/`), out.url);
  assert.equal(out.storedStatus, 200);
  assert.ok(out.same, "the stored file differs from the upload");
  if (!out.url.startsWith("https://")) {
    assert.deepEqual(out.refused, { name: "ValidationError", isValidation: true, fields: ["body.image_urls"] });
  }
  assert.match(out.requestId, REQUEST_ID);
  assert.equal(out.images, 1);
  const initiate = logsSince(mark).find((l) => l.route === "upload_initiate");
  assert.ok(initiate && initiate.status === 200 && initiate.client === "compat", "the upload was not initiated through the proxy");
});

test("browser: invalid input raises ValidationError with fieldErrors", { timeout: TEST_TIMEOUT }, async () => {
  const out = await inPage(
    allowedPage,
    async ({ proxyUrl, key, EDIT }) => {
      const fal = falClient.createFalClient({ proxyUrl, credentials: key, suppressLocalCredentialsWarning: true });
      try {
        await fal.queue.submit(EDIT, { input: { prompt: "x", image_urls: ["http://example.com/a.png"], num_images: 9 } });
        return { failed: false };
      } catch (e) {
        return {
          failed: true,
          name: e.name,
          isValidation: e instanceof falClient.ValidationError,
          isApi: e instanceof falClient.ApiError,
          status: e.status,
          code: e.body?.code,
          fields: [...new Set(e.fieldErrors.map((f) => f.loc[1]))].sort(),
          promptErrors: e.getFieldErrors("prompt").length,
        };
      }
    },
    pageArgs(),
  );
  assert.deepEqual(out, {
    failed: true,
    name: "ValidationError",
    isValidation: true,
    isApi: true,
    status: 422,
    code: "invalid_input",
    fields: ["image_urls", "num_images", "prompt"],
    promptErrors: 1,
  });
});

test("browser: a page origin not in cors.allowed_origins is refused by the browser", { timeout: TEST_TIMEOUT }, async () => {
  const mark = proxy.logs().length;
  const out = await inPage(
    refusedPage,
    async ({ proxyUrl, key, TEXT_TO_IMAGE }) => {
      const fal = falClient.createFalClient({ proxyUrl, credentials: key, suppressLocalCredentialsWarning: true });
      try {
        await fal.queue.submit(TEXT_TO_IMAGE, { input: { prompt: "from a foreign origin" } });
        return { rejected: false };
      } catch (e) {
        return { rejected: true, name: e.name, message: String(e.message), isApi: e instanceof falClient.ApiError };
      }
    },
    pageArgs(),
  );
  assert.equal(out.rejected, true, "the call from a refused origin succeeded");
  // The browser blocks the answer: the client sees a network error, not an HTTP status.
  assert.equal(out.isApi, false, JSON.stringify(out));
  assert.equal(out.name, "TypeError", JSON.stringify(out));
  const lines = logsSince(mark);
  const preflights = lines.filter((l) => l.method === "OPTIONS");
  assert.ok(preflights.length > 0 && preflights.every((l) => l.status === 403), JSON.stringify(lines));
  assert.ok(!lines.some((l) => l.route === "submit"), "a submit from the refused origin reached the proxy");
});
