-- GET the URL given to wrk as is, e.g.
--   /api/collections/posts/records?page=1&perPage=30
-- Exists only to add the BENCH_RESULT line from common.lua.
dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
