-- wrk script for every scenario and target. Configured through the environment:
--   BENCH_METHOD  GET or POST
--   BENCH_TARGET  value of x-fal-target-url (unset for the direct target)
--   BENCH_AUTH    value of Authorization (unset: none)
--   BENCH_BODY    a file whose bytes are the request body (POST)
--   BENCH_OUT     file to which done() writes one line of key=value results
--   BENCH_MIN_BYTES  set for large answers (S4's ~3 MB result): the size every answer must at
--                 least have. wrk hands each answer whole to response() when the script
--                 defines one, copying it twice on the way; for 3 MB answers that made wrk the
--                 bottleneck of every S4 point (direct: ~430 results/s with it, ~970 without).
--                 So with this set response() is not defined: wrk counts statuses above 399 as
--                 errors itself, and done() reports min_bytes so that the report can check that
--                 the bytes received cover every answer (a short or wrong relay shows as errors).
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.headers["Accept"] = "application/json"
local target = os.getenv("BENCH_TARGET")
if target and target ~= "" then wrk.headers["x-fal-target-url"] = target end
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
  local f = assert(io.open(body, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  codes = {}
end
local min_bytes = tonumber(os.getenv("BENCH_MIN_BYTES") or "")
if not min_bytes then
  function response(status, headers, body)
    codes[status] = (codes[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local codes_all = {}
  for _, t in ipairs(threads) do
    local c = t:get("codes")
    for k, v in pairs(c) do codes_all[k] = (codes_all[k] or 0) + v end
  end
  local cs = {}
  for k, v in pairs(codes_all) do table.insert(cs, k .. ":" .. v) end
  local line = string.format(
    "requests=%d duration_us=%d bytes=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d codes=%s",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout, table.concat(cs, ","))
  if min_bytes then line = line .. string.format(" min_bytes=%d", min_bytes) end
  local out = os.getenv("BENCH_OUT")
  if out and out ~= "" then
    local f = assert(io.open(out, "w")); f:write(line .. "\n"); f:close()
  end
  io.write(line .. "\n")
end
