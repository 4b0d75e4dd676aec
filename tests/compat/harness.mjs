// Shared pieces of the compatibility suites: start the fal-proxy binary in mock mode with a fresh
// client key, a tiny static server for browser pages, a PNG generator, bounded waits.
//
// Everything listens on 127.0.0.1 only and every wait has a deadline.

import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import zlib from "node:zlib";

export const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The proxy binary: `FAL_PROXY_BIN` (absolute, or relative to the current directory), else the
 *  debug build of this checkout. */
export const PROXY_BIN = process.env.FAL_PROXY_BIN
  ? path.resolve(process.env.FAL_PROXY_BIN)
  : path.resolve(HERE, "../../target/debug/fal-proxy");

export const EDIT = "fal-ai/nano-banana-pro/edit";
export const TEXT_TO_IMAGE = "fal-ai/nano-banana-pro";

/** Environment variables that would change what the proxy or the client does behind our back. */
function cleanEnv() {
  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (name.startsWith("FAL_PROXY_") || name.startsWith("FAL_KEY")) delete env[name];
  }
  return env;
}

/** Make sure the official client in this process never picks up a real fal key from the
 *  environment (a "missing key" test must really send no credentials). */
export function scrubFalEnv() {
  for (const name of ["FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"]) delete process.env[name];
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Rejects after `ms` with a message naming what was awaited. */
export function within(ms, what, promise) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** `fal-proxy keygen --id NAME`: the key (shown once) and its sha256 entry. */
export async function keygen(id = "compat") {
  const { stdout } = await promisify(execFile)(PROXY_BIN, ["keygen", "--id", id], {
    timeout: 10_000,
    env: cleanEnv(),
  });
  const key = /^#\s+(fpk_\S+)\s*$/m.exec(stdout)?.[1];
  const sha = /^key_sha256\s*=\s*"([0-9a-f]{64})"\s*$/m.exec(stdout)?.[1];
  if (!key || !sha) throw new Error(`unexpected keygen output:\n${stdout}`);
  return { id, key, sha };
}

/** Running proxies and their temporary directories. */
const live = new Map();
const killLive = () => {
  for (const [child, dir] of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
  live.clear();
};
// Last resort when a suite dies without its after() hook: never leave a proxy behind.
process.on("exit", killLive);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.once(signal, () => {
    killLive();
    process.kill(process.pid, signal);
  });
}

function waitExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * Starts `fal-proxy --mock` on a free port with one client key and anonymous access off.
 * Returns { origin, proxyUrl, key, logs(), stop() }. `logs()` is every JSON log line so far.
 */
export async function startProxy({ allowedOrigins = [], queueSeconds = 0.5, progressSeconds = 1.0 } = {}) {
  const { key, sha, id } = await keygen();
  const dir = mkdtempSync(path.join(tmpdir(), "fal-proxy-compat-"));
  const configFile = path.join(dir, "proxy.toml");
  writeFileSync(
    configFile,
    [
      'listen = "127.0.0.1:0"',
      "",
      "[server]",
      "shutdown_grace_secs = 1.0",
      "",
      "[auth]",
      "anonymous = false",
      "[[auth.api_keys]]",
      `id = "${id}"`,
      `key_sha256 = "${sha}"`,
      "",
      "[cors]",
      `allowed_origins = ${JSON.stringify(allowedOrigins)}`,
      "",
      // The suites are about protocol compatibility, not limits: room for every flow.
      "[store]",
      'backend = "memory"',
      "",
      "[plans.default]",
      "submit = { per_minute = 6000, burst = 200 }",
      "poll = { per_minute = 60000, burst = 2000 }",
      "upload = { per_minute = 6000, burst = 200 }",
      "max_jobs_in_flight = 100",
      "daily_budget_usd = 1000.0",
      "monthly_budget_usd = 10000.0",
      "",
      "[limits]",
      "global_submit = { per_minute = 6000, burst = 200 }",
      "",
      "[mock]",
      `queue_seconds = ${queueSeconds.toFixed(2)}`,
      `progress_seconds = ${progressSeconds.toFixed(2)}`,
      "",
    ].join("\n"),
  );

  const child = spawn(PROXY_BIN, ["--mock", "--config", configFile, "--log-json"], {
    stdio: ["ignore", "ignore", "pipe"],
    env: cleanEnv(),
  });
  live.set(child, dir);
  const lines = [];
  const stderr = createInterface({ input: child.stderr });
  let addr;
  const ready = new Promise((resolve, reject) => {
    stderr.on("line", (line) => {
      if (lines.length < 20_000) lines.push(line);
      if (!addr && line.includes("fal-proxy listening")) {
        try {
          addr = JSON.parse(line).addr;
        } catch {
          addr = /"addr":"([^"]+)"/.exec(line)?.[1];
        }
        if (addr) resolve(addr);
      }
    });
    child.once("error", reject);
    child.once("exit", (code, signal) =>
      reject(new Error(`fal-proxy exited (${code ?? signal}) before listening:\n${lines.join("\n")}`)),
    );
  });

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      if (!(await waitExit(child, 4_000))) {
        child.kill("SIGKILL");
        await waitExit(child, 2_000);
      }
    }
    live.delete(child);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await within(15_000, `${PROXY_BIN} to listen`, ready);
  } catch (error) {
    await stop();
    throw error;
  }
  const origin = `http://${addr}`;
  return {
    origin,
    proxyUrl: `${origin}/api/fal/proxy`,
    key,
    /** The proxy's JSON log lines (parsed), oldest first. */
    logs: () =>
      lines.flatMap((line) => {
        try {
          return [JSON.parse(line)];
        } catch {
          return [];
        }
      }),
    stop,
  };
}

/**
 * A fetch for `fal.config({ fetch })` that records every call the client makes: where it went,
 * the method, the headers it sent (lower-cased) and the answer's status and content type.
 */
export function recordingFetch(calls) {
  return async (url, init = {}) => {
    const headers = {};
    for (const [name, value] of new Headers(init.headers ?? {})) headers[name] = value;
    const entry = { url: String(url), method: (init.method ?? "GET").toUpperCase(), headers };
    calls.push(entry);
    const response = await fetch(url, init);
    entry.status = response.status;
    entry.contentType = response.headers.get("content-type") ?? "";
    return response;
  };
}

/** A static HTTP server on 127.0.0.1 (its own origin). `routes` maps a path to {type, body}. */
export async function startStaticServer(routes) {
  const server = http.createServer((req, res) => {
    const route = routes[new URL(req.url, "http://x").pathname];
    if (!route) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": route.type, "cache-control": "no-store" }).end(route.body);
  });
  await within(
    5_000,
    "static server to listen",
    new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", resolve);
    }),
  );
  const { port } = server.address();
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      within(
        5_000,
        "static server to close",
        new Promise((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
      ),
  };
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** A small valid RGB PNG (a gradient, so each size gives different bytes). */
/**
 * Launches Debian's Chromium (CHROMIUM_BIN, default /usr/bin/chromium) headless through
 * playwright-core, with the flags that keep it off the network; playwright-core gives it a fresh
 * temporary profile and removes it on close.
 */
export async function launchChromium() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN ?? "/usr/bin/chromium",
    headless: true,
    chromiumSandbox: false,
    timeout: 30_000,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

export function makePng(width = 8, height = 8) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // colour type: RGB
  const raw = Buffer.alloc(height * (1 + width * 3));
  for (let y = 0; y < height; y++) {
    const row = y * (1 + width * 3);
    raw[row] = 0; // filter: none
    for (let x = 0; x < width; x++) {
      raw[row + 1 + x * 3] = (x * 255) / Math.max(1, width - 1);
      raw[row + 2 + x * 3] = (y * 255) / Math.max(1, height - 1);
      raw[row + 3 + x * 3] = 128;
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", zlib.deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

export const pngDataUri = (png) => `data:image/png;base64,${png.toString("base64")}`;
export const isPng = (bytes) =>
  bytes.length > 8 && Buffer.from(bytes.subarray(0, 8)).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
