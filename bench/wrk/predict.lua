-- wrk script of the `serve` benchmark (bench/run.sh serve): every request is
-- POST <url> with the JSON body read once from the file named by
-- $KILN_BENCH_BODY (one bike-rental row, the same for every server).
--
--   KILN_BENCH_BODY=body.json wrk -t2 -c64 -d15s --latency -s predict.lua URL
--
-- At the end it prints one line the harness reads (latencies in microseconds):
--   kiln-bench: requests=N duration_us=D rps=R p50_us=A p99_us=B max_us=C
--               connect=E read=E write=E status=E timeout=E
-- status counts the responses with a status >= 400 (wrk's "Non-2xx or 3xx").

local path = os.getenv("KILN_BENCH_BODY")
if not path then
  io.stderr:write("predict.lua: set KILN_BENCH_BODY to the request body's file\n")
  os.exit(2)
end
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "kiln-bench: requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d max_us=%d " ..
    "connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
