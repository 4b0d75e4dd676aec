// The playground page served by fal-proxy at `/`, driven end to end in Chromium like a person
// would: upload an image through the proxy, write a prompt, submit, watch the job, see the
// result images rendered. Screenshots at desktop and phone sizes land in `screenshots/`.
//
// Run: node --test playground.test.mjs. Chromium: CHROMIUM_BIN, default /usr/bin/chromium.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";

import { HERE, launchChromium, makePng, scrubFalEnv, startProxy, within } from "./harness.mjs";

const TEST_TIMEOUT = 40_000;
const SHOTS = path.join(HERE, "screenshots");

scrubFalEnv();

let proxy;
let browser;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  proxy = await startProxy({ queueSeconds: 0.5, progressSeconds: 1.0 });
  browser = await launchChromium();
});

after(async () => {
  await Promise.allSettled([browser ? within(10_000, "browser close", browser.close()) : null, proxy?.stop()]);
});

/** Opens the playground in a fresh context of the given viewport, with the client key set. */
async function openPlayground(viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 4\d\d/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  const response = await page.goto(`${proxy.origin}/`);
  assert.equal(response.status(), 200);
  await page.fill("#client-key", proxy.key);
  return { context, page, problems };
}

/** Waits for the job to finish and returns the rendered result images' natural sizes. */
async function waitForResults(page) {
  await page.waitForSelector("#results img", { timeout: 25_000 });
  await page.waitForFunction(
    () => [...document.querySelectorAll("#results img")].every((img) => img.complete && img.naturalWidth > 0),
    null,
    { timeout: 10_000 },
  );
  await page.waitForFunction(() => document.querySelector("#status")?.textContent.includes("COMPLETED"), null, {
    timeout: 10_000,
  });
  return page.$$eval("#results img", (imgs) => imgs.map((img) => [img.naturalWidth, img.naturalHeight]));
}

test("desktop: upload an image, submit an edit, watch it, see the result", { timeout: TEST_TIMEOUT }, async () => {
  const { context, page, problems } = await openPlayground({ width: 1280, height: 900 });
  try {
    await page.setInputFiles("#image-input", {
      name: "reference.png",
      mimeType: "image/png",
      buffer: makePng(64, 48),
    });
    // The upload went through the proxy's native storage route.
    await page.waitForFunction(
      () => document.querySelector('[data-testid="thumb"]')?.textContent.includes("Uploaded"),
      null,
      { timeout: 10_000 },
    );
    await page.fill("#prompt", "Put the reference on a surfboard at sunset");
    await page.selectOption("#aspect-ratio", "16:9");
    await page.fill("#num-images", "2");
    await page.click("#submit");
    // Live status is shown while the job runs.
    await page.waitForFunction(
      () => /IN_QUEUE|IN_PROGRESS|FINISHING|COMPLETED/.test(document.querySelector("#status")?.textContent ?? ""),
      null,
      { timeout: 10_000 },
    );
    const sizes = await waitForResults(page);
    assert.equal(sizes.length, 2);
    for (const [w, h] of sizes) assert.ok(w > h, `16:9 image expected, got ${w}x${h}`);
    assert.ok((await page.$$("#logs li")).length > 0, "log lines were shown");
    await page.screenshot({ path: path.join(SHOTS, "playground-desktop.png"), fullPage: true });

    const logs = proxy.logs();
    const routes = logs.map((l) => `${l.method} ${l.route} ${l.status}`);
    assert.ok(routes.includes("POST upload_initiate 200"), routes.join("\n"));
    assert.ok(routes.includes("POST submit 200"), routes.join("\n"));
    assert.ok(routes.includes("GET result 200"), routes.join("\n"));
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test("phone: text-to-image, and validation errors explained in words", { timeout: TEST_TIMEOUT }, async () => {
  const { context, page, problems } = await openPlayground({ width: 375, height: 812 });
  try {
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(overflow, false, "no horizontal scroll on a phone");
    // A prompt that is too short: the proxy's 422 is explained next to the form.
    await page.fill("#prompt", "hi");
    await page.click("#submit");
    await page.waitForFunction(() => document.querySelector("#errors")?.textContent.includes("prompt"), null, {
      timeout: 10_000,
    });
    await page.fill("#prompt", "A lighthouse on a cliff in a storm, cinematic");
    await page.click("#submit");
    const sizes = await waitForResults(page);
    assert.equal(sizes.length, 1);
    await page.screenshot({ path: path.join(SHOTS, "playground-phone.png"), fullPage: true });
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
