-- wrk reporter for bench/load.sh: prints one machine-readable line after the run.
--
-- The line starts with "WRK_JSON " and holds the totals and latency percentiles (microseconds).
-- `summary.errors.status` is wrk's count of responses with a status >= 400; together with the
-- pre-flight check in load.sh (every peer answers 200, no redirect) that makes it the non-2xx count.
-- No `response()` callback is defined on purpose: it would make wrk parse every response in Lua
-- and slow the load generator, which shares its core with the upstream.

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,' ..
    '"p50":%d,"p90":%d,"p99":%d,"p99_9":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency.stdev,
    latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
