-- wrk script for S3f: every request carries the next token of a pool of distinct,
-- valid RS256 JWTs (file named by $BENCH_TOKENS, one per line; see jwt_pool.py),
-- starting at $BENCH_TOKEN_START (the measured run continues the warm-up's cycle,
-- so a token comes back only after the whole pool).
-- The requests are formatted once per thread; wrk.format() with a headers table
-- replaces wrk.headers (Host included), so those are copied in.
local requests = {}
local i = 0

function init(args)
    for token in io.lines(os.getenv("BENCH_TOKENS")) do
        local headers = {}
        for name, value in pairs(wrk.headers) do headers[name] = value end
        headers["Authorization"] = "Bearer " .. token
        requests[#requests + 1] = wrk.format(nil, nil, headers)
    end
    i = (tonumber(os.getenv("BENCH_TOKEN_START")) or 0) % #requests
end

function request()
    i = i % #requests + 1
    return requests[i]
end
