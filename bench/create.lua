-- POST a new record per request:
--   {"title":"hello <n>","views":<random 0..1000>,"body":"lorem ipsum dolor sit amet"}
-- <n> is unique across wrk threads (thread id + k * thread count).
--
-- Two modes:
--   * timed (default): runs for wrk's -d duration.
--   * bounded: BENCH_CREATE_LIMIT=N creates exactly N records in total,
--     split across BENCH_THREADS threads (must equal wrk's -t). wrk calls
--     delay() before every request() (a delay() function makes it do so), and
--     the request follows later from a timer, so delay() is where a thread
--     reserves one of its share: once the share is reserved it parks the
--     connection (a one-hour delay). When all of the thread's responses have
--     arrived it creates the file $BENCH_DONE_DIR/<thread id>. The caller watches for one file per
--     thread and sends wrk SIGINT, which ends the run early; wrk's -d is then
--     only an upper bound. A request lost to a socket error never gets its
--     response, so that thread never reports done and the run ends at -d; the
--     caller tops up the difference.
dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local limit = tonumber(os.getenv("BENCH_CREATE_LIMIT") or "0") or 0
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1") or 1
local done_dir = os.getenv("BENCH_DONE_DIR") or "."

-- setup() runs in the main Lua state, once per thread, before init().
local next_tid = 0
function setup(thread)
   thread:set("tid", next_tid)
   next_tid = next_tid + 1
end

local sent, reserved, received, quota = 0, 0, 0, 0

local function mark_done()
   local f = io.open(done_dir .. "/" .. tostring(tid), "w")
   if f then
      f:write(string.format("quota=%d received=%d\n", quota, received))
      f:close()
   end
end

function init(args)
   tid = tid or 0
   math.randomseed(os.time() * 1000 + tid * 7919)
   if limit > 0 then
      quota = math.floor(limit / nthreads)
      if tid < limit % nthreads then quota = quota + 1 end
      if quota == 0 then mark_done() end
   end
end

function request()
   local n = (tid or 0) + sent * nthreads
   sent = sent + 1
   local body = string.format(
      '{"title":"hello %d","views":%d,"body":"lorem ipsum dolor sit amet"}',
      n, math.random(0, 1000))
   return wrk.format(nil, nil, nil, body)
end

if limit > 0 then
   -- Defined only in bounded mode: a delay() or response() function makes
   -- wrk do extra work per request, which the timed benchmark must not pay.
   function delay()
      if reserved >= quota then return 3600000 end -- park the connection
      reserved = reserved + 1
      return 0
   end

   function response(status, headers, body)
      received = received + 1
      if received == quota then mark_done() end
   end
end
