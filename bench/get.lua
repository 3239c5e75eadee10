-- GET /api/collections/<c>/records/<id>, cycling over the ids listed one per
-- line in $BENCH_IDS_FILE. Give wrk the records URL with a trailing slash,
-- e.g. http://127.0.0.1:8090/api/collections/posts/records/
-- Each thread starts at a different random offset.
dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")

local next_tid = 0
function setup(thread)
   thread:set("tid", next_tid)
   next_tid = next_tid + 1
end

local reqs, idx = {}, 0

function init(args)
   local file = os.getenv("BENCH_IDS_FILE") or error("BENCH_IDS_FILE is not set")
   local base = wrk.path
   if base:sub(-1) ~= "/" then base = base .. "/" end
   for line in io.lines(file) do
      if line ~= "" then reqs[#reqs + 1] = wrk.format("GET", base .. line) end
   end
   if #reqs == 0 then error("no ids in " .. file) end
   math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
   idx = math.random(#reqs) - 1
end

function request()
   idx = idx % #reqs + 1
   return reqs[idx]
end
