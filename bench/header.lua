-- GET the URL given to wrk with one extra header from the environment:
-- BENCH_HEADER_NAME / BENCH_HEADER_VALUE (a dashboard session cookie, or a
-- superuser token for PocketBase's equivalent API call).
dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")

local name = os.getenv("BENCH_HEADER_NAME")
local value = os.getenv("BENCH_HEADER_VALUE")

request = function()
   local headers = {}
   if name and value then
      headers[name] = value
   end
   return wrk.format("GET", nil, headers)
end
