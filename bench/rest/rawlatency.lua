-- wrk script with only a done() hook (no per-request Lua: wrk runs at full speed) that prints the latency
-- distribution of the requests as they were measured, before wrk's correction for coordinated omission.
--
-- wrk 4 (Debian's 4.1.0 too) corrects its latency histogram before it reports it (stats_correct() in
-- stats.c): with interval = run time / (requests / connections), the mean time between two requests of one
-- connection, every recorded latency n >= 2 * interval adds one synthetic sample at each n - k * interval
-- (k >= 1) above interval. The percentiles wrk prints, and the histogram done() is given, include those
-- samples: one 100 ms stall of one connection at 40 us per request becomes ~2500 samples between 0 and
-- 100 ms. That estimates what a client sending at a constant rate would have seen; it is not the latency
-- of the requests that were made. The correction only adds below the sample it comes from, so it can be
-- undone from the top: orig[m] = corrected[m] - (orig[m + i] + orig[m + 2i] + ...) for m > i.
--
-- The histogram is read directly with LuaJIT's FFI (Lua's latency[i] returns the i-th non-empty bucket,
-- scanning from the start each time: quadratic). Layout of wrk 4.1.0's stats.h: uint64_t count, limit,
-- min, max, data[limit] (data[n] = number of samples of n microseconds). A layout check (count = sum of
-- the buckets, max = latency.max) guards it.
--
-- Prints one line: RAW-LATENCY {"count", "mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us",
-- "interval_us", "corrected_count"} or RAW-LATENCY {"error": ...}.
-- wrk does not show a script its options: the number of connections comes from $WRK_CONNECTIONS.

local ffi = require("ffi")
ffi.cdef [[ typedef struct { uint64_t count; uint64_t limit; uint64_t min; uint64_t max; } pgha_wrk_stats; ]]

local function fail(msg)
   io.write(string.format('RAW-LATENCY {"error": "%s"}\n', msg))
end

function done(summary, latency, requests)
   local conns = tonumber(os.getenv("WRK_CONNECTIONS") or "0") or 0
   if conns <= 0 then
      return fail("WRK_CONNECTIONS not set")
   end
   local s = ffi.cast("pgha_wrk_stats **", latency)[0]
   local data = ffi.cast("uint64_t *", s) + 4
   local lo, hi, total = tonumber(s.min), tonumber(s.max), tonumber(s.count)
   if total == 0 then
      return fail("no samples")
   end
   if hi ~= latency.max or hi >= tonumber(s.limit) then
      return fail("unexpected histogram layout")
   end
   local check = 0
   for m = lo, hi do
      check = check + tonumber(data[m])
   end
   if check ~= total then
      return fail("unexpected histogram layout (count)")
   end
   -- the interval exactly as wrk computed it (integer divisions)
   local per_conn = math.floor(summary.requests / conns)
   local interval = per_conn > 0 and math.floor(summary.duration / per_conn) or 0
   local orig = ffi.new("double[?]", hi + 1)
   -- acc[m] = orig[m] + orig[m + interval] + orig[m + 2 * interval] + ...
   local acc = ffi.new("double[?]", hi + 1)
   local count, sum = 0, 0
   for m = hi, lo, -1 do
      local v = tonumber(data[m])
      local above = (interval > 0 and m + interval <= hi) and acc[m + interval] or 0
      if interval > 0 and m > interval then
         v = v - above
      end
      orig[m] = v
      acc[m] = v + above
      count = count + v
      sum = sum + v * m
   end
   local function pct(p)
      -- wrk's rank rule (stats_percentile)
      local rank = math.floor(p / 100 * count + 0.5 + 0.5)
      local seen = 0
      for m = lo, hi do
         seen = seen + orig[m]
         if seen >= rank then
            return m
         end
      end
      return hi
   end
   io.write(string.format('RAW-LATENCY {"count": %d, "mean_us": %.1f, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
                             .. '"p999_us": %d, "max_us": %d, "interval_us": %d, "corrected_count": %d}\n',
                          count, sum / count, pct(50), pct(90), pct(99), pct(99.9), hi, interval, total))
end
