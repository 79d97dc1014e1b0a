#!/bin/sh
# make soak [SOAK_SECONDS=600]: a long, bounded run under load that shows
# whether worker memory stays flat (issue 8). Not part of `make test`.
#
# Starts the test upstream and sluice (2 workers: proxy with upstream
# keep-alive, a response cache, a rate limit that never trips, and a share
# of requests that fail upstream, time out or are refused), drives it with
# wrk in windows of 30 s, and records each worker's private RSS (RssAnon:
# the shared zones are left out) after every window.
# After two windows of warm-up (pools, free lists, connections), the
# private RSS of the workers may not grow by more than SOAK_MAX_GROWTH_KB
# (default 1024) in total. Prints one line per window; exits 1 on growth,
# on a failed start, when a worker died, or when the error log has alerts.
#
# Needs wrk (Debian package wrk; installed when missing and run as root).
set -eu
cd "$(dirname "$0")/../.."
BUILDDIR=${BUILDDIR:-objs}
SECONDS_TOTAL=${SOAK_SECONDS:-600}
WINDOW=${SOAK_WINDOW:-30}
MAX_GROWTH_KB=${SOAK_MAX_GROWTH_KB:-1024}

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then apt-get install -y -q wrk >/dev/null; else echo "soak: wrk is needed (apt-get install wrk)" >&2; exit 1; fi
fi
[ -x "$BUILDDIR/sluice" ] && [ -x "$BUILDDIR/test_upstream" ] || make build "$BUILDDIR/test_upstream" >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-soak.XXXXXX")
UP_PORT=$(free_port)
GW_PORT=$(free_port)
mkdir -p "$WORK/conf" "$WORK/logs"
cleanup() {
    [ -f "$WORK/logs/sluice.pid" ] && kill "$(cat "$WORK/logs/sluice.pid")" 2>/dev/null || true
    [ -n "${UP_PID:-}" ] && kill "$UP_PID" 2>/dev/null || true
    sleep 1
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

cat > "$WORK/conf/sluice.conf" <<EOF
daemon off;
worker_processes 2;
error_log logs/error.log warn;
pid logs/sluice.pid;
events { worker_connections 4096; }
http {
    access_log off;
    proxy_cache_path cache keys_zone=soak:4m max_size=16m;
    limit_req_zone \$binary_remote_addr zone=rl:1m rate=1000000r/s;
    upstream be { server 127.0.0.1:$UP_PORT; keepalive 32; }
    server {
        listen 127.0.0.1:$GW_PORT;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_read_timeout 2s;
        location / { limit_req zone=rl burst=100000 nodelay; proxy_pass http://be; }
        location /c/ { proxy_cache soak; proxy_cache_valid 200 5s; proxy_pass http://be/cache/; }
        location /slow/ { proxy_read_timeout 50ms; proxy_pass http://be/delay/; }
    }
}
EOF

"$BUILDDIR/test_upstream" --port "$UP_PORT" >"$WORK/logs/upstream.log" 2>&1 &
UP_PID=$!
"$BUILDDIR/sluice" -p "$WORK/" -c "$WORK/conf/sluice.conf" >"$WORK/logs/stderr.log" 2>&1 &
for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$GW_PORT/ready" 2>/dev/null && break; sleep 0.2; done
curl -fs -o /dev/null "http://127.0.0.1:$GW_PORT/ready" || { echo "soak: sluice did not start" >&2; cat "$WORK/logs/stderr.log" >&2; exit 1; }

# The mix: plain proxying, cache hits and misses over 2,000 keys, upstream
# errors and timeouts, bad requests.
cat > "$WORK/mix.lua" <<'EOF'
local n = 0
request = function()
    n = n + 1
    local k = n % 10
    if k < 5 then return wrk.format("GET", "/api/" .. n % 97)
    elseif k < 8 then return wrk.format("GET", "/c/key" .. n % 2000 .. "?h=Cache-Control:max-age%3D5")
    elseif k == 8 then return wrk.format("GET", "/status/503")
    else return wrk.format("GET", "/slow/200") end
end
EOF

rss_kb() {
    total=0
    for p in $(pgrep -P "$(cat "$WORK/logs/sluice.pid")"); do
        # Private memory only: pages of the shared zones a worker touches
        # count in VmRSS too, and the cache zone fills up by design.
        r=$(awk '/^RssAnon:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + r))
    done
    echo "$total"
}

windows=$((SECONDS_TOTAL / WINDOW))
[ "$windows" -ge 2 ] || windows=2
base=0
status=0
warm=2  # windows of warm-up: pools, free lists and connections reach their size
[ "$windows" -ge 3 ] || warm=1
echo "soak: $windows windows of ${WINDOW}s against 127.0.0.1:$GW_PORT (2 workers)"
i=1
while [ "$i" -le "$windows" ]; do
    out=$(wrk -t2 -c64 -d"${WINDOW}s" -s "$WORK/mix.lua" "http://127.0.0.1:$GW_PORT" 2>&1)
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    errs=$(echo "$out" | awk '/Socket errors/ {print}' )
    rss=$(rss_kb)
    [ "$i" -eq "$warm" ] && base=$rss
    echo "window $i: requests=${reqs:-0} workers_private_rss_kb=$rss ${errs}"
    if [ "$(pgrep -P "$(cat "$WORK/logs/sluice.pid")" | wc -l)" -ne 2 ]; then echo "soak: a worker died" >&2; status=1; fi
    i=$((i + 1))
done
growth=$((rss - base))
echo "soak: workers' private RSS after warm-up ${base} KiB, at the end ${rss} KiB (growth ${growth} KiB, limit ${MAX_GROWTH_KB})"
if grep -E "\[(alert|emerg|crit)\]|exited on signal" "$WORK/logs/error.log" >/dev/null 2>&1; then
    echo "soak: the error log has alerts or crashed workers:" >&2
    grep -E "\[(alert|emerg|crit)\]|exited on signal" "$WORK/logs/error.log" | head >&2
    status=1
fi
[ "$growth" -le "$MAX_GROWTH_KB" ] || { echo "soak: worker memory grew" >&2; status=1; }
exit $status
