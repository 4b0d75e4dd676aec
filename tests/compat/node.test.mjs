// The official @fal-ai/client, in Node, against fal-proxy in mock mode through `proxyUrl`
// (the browser-proxy protocol: every fal URL is sent to the proxy with `x-fal-target-url`).
//
// Run: node --test node.test.mjs (FAL_PROXY_BIN names the binary; default: the debug build).

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, test } from "node:test";

import { ApiError, ValidationError, createFalClient, fal } from "@fal-ai/client";

import {
  EDIT,
  TEXT_TO_IMAGE,
  isPng,
  makePng,
  pngDataUri,
  recordingFetch,
  scrubFalEnv,
  sleep,
  startProxy,
  within,
} from "./harness.mjs";

const TEST_TIMEOUT = 20_000;
const REQUEST_ID = /^[0-9a-zA-Z-]{8,}$/;

scrubFalEnv();

let proxy;

before(async () => {
  proxy = await startProxy({ queueSeconds: 0.5, progressSeconds: 1.0 });
});

after(async () => {
  await proxy?.stop();
});

/** The client options the official docs give for a proxy, with the proxy used in Node too. */
function clientConfig(calls, overrides = {}) {
  return {
    proxyUrl: { url: proxy.proxyUrl, when: "always" },
    credentials: proxy.key,
    fetch: recordingFetch(calls),
    ...overrides,
  };
}

const newClient = (calls, overrides) => createFalClient(clientConfig(calls, overrides));

/** The calls that went to the proxy, with the fal URL each named. */
const proxied = (calls) => calls.filter((c) => c.url === proxy.proxyUrl);

function assertAllThroughProxy(calls) {
  const toProxy = proxied(calls);
  assert.ok(toProxy.length > 0, "the client made no call to the proxy");
  for (const call of toProxy) {
    assert.match(call.headers["x-fal-target-url"] ?? "", /^https:\/\/(queue\.fal\.run|fal\.run|rest\.fal\.ai)\//);
    assert.equal(call.headers.authorization, `Key ${proxy.key}`);
  }
}

/** Waits for an expected rejection and returns the error. */
async function rejection(promise, what) {
  try {
    await within(TEST_TIMEOUT - 2_000, what, promise);
  } catch (error) {
    return error;
  }
  assert.fail(`${what}: expected the call to fail, it succeeded`);
}

const editInput = (prompt = "a red fox in fresh snow") => ({
  prompt,
  image_urls: [pngDataUri(makePng(8, 8))],
});

/** The result of a generation: images served by the fake, each a real PNG. */
async function assertImages(data, count = 1) {
  assert.ok(Array.isArray(data.images), `no images in ${JSON.stringify(data)}`);
  assert.equal(data.images.length, count);
  for (const image of data.images) {
    assert.ok(image.url.startsWith(`${proxy.origin}/_mock/files/gen/`), image.url);
    const response = await fetch(image.url, { signal: AbortSignal.timeout(5_000) });
    assert.equal(response.status, 200);
    assert.ok(isPng(new Uint8Array(await response.arrayBuffer())), "generated image is not a PNG");
  }
}

test("queue.submit + queue.status (logs) + queue.result via fal.config({ proxyUrl, credentials })", { timeout: TEST_TIMEOUT }, async () => {
  const calls = [];
  fal.config(clientConfig(calls));

  const submitted = await fal.queue.submit(EDIT, { input: editInput() });
  assert.match(submitted.request_id, REQUEST_ID);
  assert.equal(submitted.status, "IN_QUEUE");
  // The protocol leaves fal's URLs alone: the client follows them through the proxy itself.
  assert.ok(submitted.status_url.startsWith("https://queue.fal.run/fal-ai/nano-banana-pro/requests/"), submitted.status_url);
  const requestId = submitted.request_id;

  const seen = [];
  const deadline = Date.now() + 10_000;
  let status;
  do {
    status = await fal.queue.status(EDIT, { requestId, logs: true });
    seen.push(status.status);
    if (status.status !== "COMPLETED") await sleep(150);
  } while (status.status !== "COMPLETED" && Date.now() < deadline);

  assert.equal(status.status, "COMPLETED", `statuses seen: ${seen.join(", ")}`);
  assert.ok(seen.some((s) => s === "IN_QUEUE" || s === "IN_PROGRESS"), `statuses seen: ${seen.join(", ")}`);
  assert.equal(status.request_id, requestId);
  assert.ok(Array.isArray(status.logs) && status.logs.length > 0, "status with logs=1 carried no logs");
  for (const line of status.logs) assert.equal(typeof line.message, "string");

  const result = await fal.queue.result(EDIT, { requestId });
  assert.equal(result.requestId, requestId, "result.requestId is the x-fal-request-id of the answer");
  await assertImages(result.data);

  assertAllThroughProxy(calls);
  const targets = proxied(calls).map((c) => `${c.method} ${c.headers["x-fal-target-url"]}`);
  assert.equal(targets[0], `POST https://queue.fal.run/${EDIT}`);
  assert.ok(targets.includes(`GET https://queue.fal.run/fal-ai/nano-banana-pro/requests/${requestId}/status?logs=1`), targets.join("\n"));
  assert.equal(targets.at(-1), `GET https://queue.fal.run/fal-ai/nano-banana-pro/requests/${requestId}`);
  assert.equal(proxied(calls)[0].headers["x-fal-queue-priority"], "normal");
});

test("subscribe in polling mode calls onEnqueue and onQueueUpdate", { timeout: TEST_TIMEOUT }, async () => {
  const calls = [];
  const client = newClient(calls);
  const updates = [];
  let enqueued;
  const result = await client.subscribe(TEXT_TO_IMAGE, {
    input: { prompt: "a lighthouse at dusk", num_images: 2 },
    mode: "polling",
    pollInterval: 200,
    logs: true,
    onEnqueue: (id) => {
      enqueued = id;
    },
    onQueueUpdate: (update) => updates.push(update),
  });

  assert.match(enqueued ?? "", REQUEST_ID);
  assert.equal(result.requestId, enqueued);
  assert.ok(updates.length >= 2, `only ${updates.length} queue update(s)`);
  assert.ok(updates.some((u) => u.status === "IN_QUEUE" || u.status === "IN_PROGRESS"));
  assert.equal(updates.at(-1).status, "COMPLETED");
  await assertImages(result.data, 2);

  assertAllThroughProxy(calls);
  const polls = proxied(calls).filter((c) => c.headers["x-fal-target-url"].endsWith("/status?logs=1"));
  assert.equal(polls.length, updates.length, "one status GET per update");
});

test("subscribe in streaming mode receives live updates over SSE through the proxy", { timeout: TEST_TIMEOUT }, async () => {
  const calls = [];
  const client = newClient(calls);
  const updates = [];
  let enqueued;
  const result = await client.subscribe(EDIT, {
    input: editInput("a lantern in the fog"),
    mode: "streaming",
    logs: true,
    onEnqueue: (id) => {
      enqueued = id;
    },
    onQueueUpdate: (update) => updates.push({ at: Date.now(), update }),
  });

  assert.equal(result.requestId, enqueued);
  await assertImages(result.data);
  const statuses = updates.map((u) => u.update.status);
  assert.ok(updates.length >= 3, `updates: ${statuses.join(", ")}`);
  assert.equal(statuses.at(-1), "COMPLETED");
  assert.ok(statuses.includes("IN_PROGRESS"), `updates: ${statuses.join(", ")}`);
  // The job spends 0.5 s queued and 1 s running: events that arrive spread over that time were
  // relayed as they happened, not buffered until the stream ended.
  const spread = updates.at(-1).at - updates[0].at;
  assert.ok(spread >= 700, `all ${updates.length} events arrived within ${spread} ms: the stream was buffered`);
  const last = updates.at(-1).update;
  assert.ok(Array.isArray(last.logs) && last.logs.length > 0, "no logs accumulated from the stream");

  assertAllThroughProxy(calls);
  const targets = proxied(calls).map((c) => c.headers["x-fal-target-url"]);
  const stream = proxied(calls).find((c) => c.headers["x-fal-target-url"].endsWith(`/requests/${enqueued}/status/stream?logs=1`));
  assert.ok(stream, targets.join("\n"));
  assert.equal(stream.status, 200);
  assert.ok(stream.contentType.startsWith("text/event-stream"), stream.contentType);
  assert.ok(!targets.some((t) => /\/status\?logs=/.test(t)), "streaming mode should not poll");
});

test("queue.cancel of a queued job, and of a finished one", { timeout: TEST_TIMEOUT }, async () => {
  const calls = [];
  const client = newClient(calls);
  const { request_id: requestId } = await client.queue.submit(TEXT_TO_IMAGE, { input: { prompt: "to be cancelled" } });
  assert.equal(await client.queue.cancel(TEXT_TO_IMAGE, { requestId }), undefined);
  const cancel = proxied(calls).at(-1);
  assert.equal(cancel.method, "PUT");
  assert.equal(cancel.headers["x-fal-target-url"], `https://queue.fal.run/fal-ai/nano-banana-pro/requests/${requestId}/cancel`);
  assert.equal(cancel.status, 202);

  const status = await client.queue.status(TEXT_TO_IMAGE, { requestId });
  assert.equal(status.status, "COMPLETED");
  const error = await rejection(client.queue.result(TEXT_TO_IMAGE, { requestId }), "result of a cancelled job");
  assert.ok(error instanceof ApiError, String(error));
  assert.equal(error.status, 400);
  assert.equal(error.requestId, requestId);

  // A job that already finished: fal answers 400 ALREADY_COMPLETED, which must reach the client.
  const done = await client.subscribe(TEXT_TO_IMAGE, { input: { prompt: "finished first" }, pollInterval: 200 });
  const late = await rejection(client.queue.cancel(TEXT_TO_IMAGE, { requestId: done.requestId }), "cancel after completion");
  assert.ok(late instanceof ApiError, String(late));
  assert.equal(late.status, 400);
  assert.equal(late.body?.status, "ALREADY_COMPLETED");
});

test("storage.upload of a generated PNG, then a submit using the uploaded file", { timeout: TEST_TIMEOUT }, async () => {
  const calls = [];
  const client = newClient(calls);
  const png = makePng(16, 12);
  const url = await client.storage.upload(new File([png], "compat-dot.png", { type: "image/png" }));
  assert.equal(typeof url, "string");

  // initiate goes through the proxy (authenticated); the bytes go straight to the pre-signed URL.
  const initiate = proxied(calls)[0];
  assert.equal(initiate.method, "POST");
  assert.equal(initiate.headers["x-fal-target-url"], "https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3");
  assert.equal(initiate.status, 200);
  const put = calls.find((c) => c.method === "PUT");
  assert.ok(put && put.url !== proxy.proxyUrl, "the upload PUT should go to the upload_url");
  assert.ok(put.url.startsWith(`${proxy.origin}/_mock/files/upload/`), put.url);
  assert.equal(put.headers.authorization, undefined, "the pre-signed PUT carries no credentials");
  assert.equal(put.status, 200);

  // The round trip: the returned URL serves exactly the uploaded bytes.
  const stored = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  assert.equal(stored.status, 200);
  assert.equal(stored.headers.get("content-type"), "image/png");
  const bytes = Buffer.from(await stored.arrayBuffer());
  assert.ok(bytes.equals(png), "the stored file differs from the upload");

  let imageRef;
  if (url.startsWith("https://")) {
    imageRef = url; // real fal storage hands out https CDN URLs, which the proxy accepts
  } else {
    // The fake serves its files over plain http://, and the proxy's policy lets only https://
    // URLs (or data URIs) reach fal: the URL as returned is refused, naming the field...
    const refused = await rejection(client.queue.submit(EDIT, { input: { prompt: "use my upload", image_urls: [url] } }), "submit with an http:// image URL");
    assert.ok(refused instanceof ValidationError, String(refused));
    assert.deepEqual(refused.fieldErrors.map((e) => e.loc.slice(0, 2)), [["body", "image_urls"]]);
    // ...so the same bytes, read back from the returned URL, go in as a data URI.
    imageRef = pngDataUri(bytes);
  }
  const result = await client.subscribe(EDIT, {
    input: { prompt: "use my upload", image_urls: [imageRef] },
    pollInterval: 200,
  });
  assert.match(result.requestId, REQUEST_ID);
  await assertImages(result.data);
  assertAllThroughProxy(calls);
});

test("run (synchronous call to fal.run) returns data and requestId", { timeout: TEST_TIMEOUT }, async () => {
  const calls = [];
  const client = newClient(calls);
  const result = await client.run(TEXT_TO_IMAGE, { input: { prompt: "a paper boat", num_images: 2 } });
  assert.match(result.requestId, REQUEST_ID);
  await assertImages(result.data, 2);
  assertAllThroughProxy(calls);
  assert.deepEqual(
    proxied(calls).map((c) => `${c.method} ${c.headers["x-fal-target-url"]}`),
    [`POST https://fal.run/${TEXT_TO_IMAGE}`],
  );
});

test("invalid input raises ValidationError whose fieldErrors name each bad field", { timeout: TEST_TIMEOUT }, async () => {
  const calls = [];
  const client = newClient(calls);
  const error = await rejection(
    client.queue.submit(EDIT, {
      input: { prompt: "x", image_urls: ["ftp://example.com/a.png"], num_images: 9, aspect_ratio: "7:1" },
    }),
    "invalid submit",
  );
  assert.ok(error instanceof ValidationError, `${error?.name}: ${error?.message}`);
  assert.ok(error instanceof ApiError);
  assert.equal(error.status, 422);
  assert.equal(error.body.code, "invalid_input");
  const fields = new Set(error.fieldErrors.map((e) => e.loc[1]));
  assert.deepEqual([...fields].sort(), ["aspect_ratio", "image_urls", "num_images", "prompt"]);
  for (const entry of error.fieldErrors) {
    assert.equal(entry.loc[0], "body");
    assert.equal(typeof entry.msg, "string");
    assert.equal(typeof entry.type, "string");
  }
  // getFieldErrors matches the last element of `loc` (a list item's loc ends with its index).
  assert.equal(error.getFieldErrors("prompt").length, 1);
  assert.equal(error.getFieldErrors("num_images").length, 1);

  // A missing required field, and sync_mode (refused by the default policy), on the sync route.
  const missing = await rejection(client.run(EDIT, { input: { prompt: "no images given", sync_mode: true } }), "invalid run");
  assert.ok(missing instanceof ValidationError, String(missing));
  assert.deepEqual(new Set(missing.fieldErrors.map((e) => e.loc[1])), new Set(["image_urls", "sync_mode"]));
  // Nothing invalid was ever accepted: every answer was a 422.
  assert.ok(proxied(calls).every((c) => c.status === 422));
});

test("an endpoint not on the allowlist fails with ApiError 403", { timeout: TEST_TIMEOUT }, async () => {
  const calls = [];
  const client = newClient(calls);
  const submit = await rejection(client.queue.submit("fal-ai/flux/dev", { input: { prompt: "a cat" } }), "submit to fal-ai/flux/dev");
  assert.ok(submit instanceof ApiError, String(submit));
  assert.ok(!(submit instanceof ValidationError));
  assert.equal(submit.status, 403);
  assert.equal(submit.body?.code, "endpoint_not_allowed");

  const status = await rejection(client.queue.status("fal-ai/flux/dev", { requestId: "00000000-0000-0000-0000-000000000000" }), "status of fal-ai/flux");
  assert.ok(status instanceof ApiError, String(status));
  assert.equal(status.status, 403);

  const run = await rejection(client.run("fal-ai/flux/dev", { input: { prompt: "a cat" } }), "run fal-ai/flux/dev");
  assert.ok(run instanceof ApiError, String(run));
  assert.equal(run.status, 403);
  assert.equal(proxied(calls).length, 3, "a 403 is not retried");
});

test("a missing client key gives ApiError 401", { timeout: TEST_TIMEOUT }, async () => {
  const calls = [];
  const client = newClient(calls, { credentials: undefined });
  const error = await rejection(client.queue.submit(TEXT_TO_IMAGE, { input: { prompt: "no key" } }), "submit without a key");
  assert.ok(error instanceof ApiError, String(error));
  assert.equal(error.status, 401);
  assert.equal(error.body?.code, "unauthorized");
  assert.equal(proxied(calls).length, 1);
  assert.equal(proxied(calls)[0].headers.authorization, undefined, "the client sent credentials after all");
});

test("a wrong client key gives ApiError 401", { timeout: TEST_TIMEOUT }, async () => {
  const calls = [];
  const client = newClient(calls, { credentials: `fpk_${randomBytes(32).toString("base64url")}` });
  const error = await rejection(client.queue.submit(TEXT_TO_IMAGE, { input: { prompt: "bad key" } }), "submit with a wrong key");
  assert.ok(error instanceof ApiError, String(error));
  assert.equal(error.status, 401);
  const upload = await rejection(client.storage.upload(new Blob([makePng(2, 2)], { type: "image/png" })), "upload with a wrong key");
  assert.ok(upload instanceof ApiError, String(upload));
  assert.equal(upload.status, 401);
  assert.ok(!calls.some((c) => c.method === "PUT"), "no upload URL may be handed out to a wrong key");
});
