-- Shared by every wrk script in bench/: prints one machine-readable line
--   BENCH_RESULT {json}
-- after wrk's own human-readable summary. Latencies are in microseconds.
-- Loaded with dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua").
--
-- Note: wrk's summary.errors.status counts responses with status > 399,
-- i.e. "non-2xx or 3xx" in wrk's wording. None of the benchmarked endpoints
-- redirect, so it is the non-2xx count.

function done(summary, latency, requests)
   local e = summary.errors
   local secs = summary.duration / 1e6
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_s":%.3f,"bytes":%d,"rps":%.2f,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
      '"non2xx":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d}\n',
      summary.requests, secs, summary.bytes, summary.requests / secs,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean,
      e.status, e.connect, e.read, e.write, e.timeout))
end
