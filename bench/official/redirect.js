// Loaded with `node --require`: sends the official proxy's fetches for fal's hosts to the fake
// upstream (see server.js). Only the origin changes; the proxy still builds the request itself.
const fake = (process.env.FAL_FAKE_URL || "http://127.0.0.1:9000").replace(/\/$/, "");
const realFetch = globalThis.fetch;
const falOrigin = /^https:\/\/(?:queue\.)?fal\.run(?=\/)/;
globalThis.fetch = function (input, init) {
  if (typeof input === "string" && falOrigin.test(input)) {
    input = fake + input.replace(falOrigin, "");
  }
  return realFetch(input, init);
};
