-- Authenticated GET /api/collections/<c>/records/<id>, cycling over the
-- `token,id` pairs listed one per line in $BENCH_PAIRS_FILE: each request
-- sends `Authorization: <token>` of the record's owner. Give wrk the records
-- URL with a trailing slash. Each thread starts at a different random
-- offset; the requests are formatted once, in init().
dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")

local next_tid = 0
function setup(thread)
   thread:set("tid", next_tid)
   next_tid = next_tid + 1
end

local reqs, idx = {}, 0

function init(args)
   local file = os.getenv("BENCH_PAIRS_FILE") or error("BENCH_PAIRS_FILE is not set")
   local base = wrk.path
   if base:sub(-1) ~= "/" then base = base .. "/" end
   for line in io.lines(file) do
      local token, id = line:match("^([^,]+),([^,]+)$")
      if token then
         reqs[#reqs + 1] = wrk.format("GET", base .. id, { ["Authorization"] = token })
      end
   end
   if #reqs == 0 then error("no token,id pairs in " .. file) end
   math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
   idx = math.random(#reqs) - 1
end

function request()
   idx = idx % #reqs + 1
   return reqs[idx]
end
