-- A `wrk` load of steps for `lever serve`, to compare it with other HTTP servers under
-- the same load generator (docs/server.md, "Where the time goes"). Start runs load-0 to
-- load-63 first (agent "batch-bot"), then:
--   wrk -t2 -c16 -d8s --latency -s benches/wrk-steps.lua http://127.0.0.1:8080
-- Each request is a step of one of the 64 runs, round robin, a second after that run's
-- last one, adding one input token (no limit of the examples trips).
local n = 0
local base = 1768903200 -- 2026-01-20T10:00:00Z
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  local ts = os.date("!%Y-%m-%dT%H:%M:%SZ", base + 1 + math.floor(n / 64))
  local body = '{"ts":"' .. ts .. '","input_tokens":1}'
  return wrk.format(nil, "/v1/runs/load-" .. (n % 64) .. "/steps", nil, body)
end
