-- wrk script for bench/anon-clients.sh: every request is GET /v1/me from a new anonymous client,
-- told apart by X-Forwarded-For (the proxy trusts 127.0.0.0/8). Each wrk thread stops after
-- ANON_PER_THREAD requests; addresses are 10.0.0.0/8 + (ANON_OFFSET + thread * 2^22 + n).
local per_thread = tonumber(os.getenv("ANON_PER_THREAD") or "500000")
local offset = tonumber(os.getenv("ANON_OFFSET") or "0")
local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end
function init(args)
  n = 0
  sent = 0
  base = offset + tid * 4194304
end
function request()
  local v = base + sent
  sent = sent + 1
  local ip = string.format("10.%d.%d.%d", math.floor(v / 65536) % 256, math.floor(v / 256) % 256, v % 256)
  return wrk.format("GET", "/v1/me", { ["X-Forwarded-For"] = ip })
end
function response(status, headers, body)
  n = n + 1
  if status ~= 200 then bad = (bad or 0) + 1 end
  if n == per_thread then
    -- wrk waits out its -d duration even after every thread stops: tell anon-clients.sh, which
    -- then interrupts wrk (SIGINT makes it print its summary and exit).
    local f = io.open(os.getenv("ANON_DONE_FILE") or "/dev/null", "a")
    if f then f:write("done\n"); f:close() end
    wrk.thread:stop()
  end
end
function done(summary, latency, requests)
  io.write(string.format("requests=%d duration_us=%d non2xx=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
