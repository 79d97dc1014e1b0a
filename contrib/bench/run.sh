#!/usr/bin/env bash
# contrib/bench/run.sh - `make bench`: sluice side by side with nginx and HAProxy.
#
# On 127.0.0.1 only, for every scenario, each system (gateway) runs with ONE worker
# pinned to CPU $GW_CPU while wrk and the backend share CPU $CLIENT_CPU:
#
#   S0  direct     wrk -> backend (ceiling reference; backend moved to $GW_CPU)
#   S1  proxy      reverse proxy, upstream keep-alive
#   S2  jwt-hs256  valid HS256 bearer -> proxy, anything else 401
#   S3  jwt-rs256  valid RS256 bearer (the same token every request) -> proxy
#   S3f jwt-rs256  S3 with a different valid token on every request (cycling through
#                  $RS256_POOL tokens: more than a verified-token cache of 1024 holds)
#   S4  ratelimit  per-client-address limiter that never trips, then proxy
#   S5  cache-hit  response cache, every measured request is a hit
#   S6  all        S2 + S4 + S5
#   S7  tls        TLS termination (keep-alive) in front of S1
#   S7h tls-hs     S7's configuration, a new connection (TLS handshake) per request
#
# Per scenario and system: functional checks (a fast wrong answer never counts),
# wrk load (req/s, p50, p99, on-CPU us/request, worker RSS), then user-space
# instructions/request under callgrind; finally memory per idle keep-alive
# connection. A system without a template for a scenario is reported as n/a.
#
# Usage:  contrib/bench/run.sh [--quick] [--systems "sluice nginx"] [--scenarios "S1 S6"]
#                              [--duration 8s] [--no-load] [--no-callgrind] [--no-idle]
# Results: contrib/bench/results/<timestamp>/table.md (printed at the end).
# See contrib/bench/README.md for every column and knob, and to add a scenario.
#
# Only processes this script started are stopped, by PID (start time checked
# against PID reuse). All load is bounded in time (wrk -d, `timeout`).

# `make bench` runs this file with sh: continue in bash.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -uo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/../.." && pwd)"
RESULTS_ROOT="${RESULTS_ROOT:-$BENCH_DIR/results}"
WORK="${WORK:-$RESULTS_ROOT/.work}"              # keys, tokens, rendered configs, pid files
if [[ -d /dev/shm && -w /dev/shm ]]; then CACHE_ROOT="${CACHE_ROOT:-/dev/shm/sluice-bench-cache}"
else CACHE_ROOT="${CACHE_ROOT:-$WORK/cache}"; fi

QUICK=0
SYSTEMS="${SYSTEMS:-sluice nginx haproxy}"
SCENARIOS="${SCENARIOS:-S0 S1 S2 S3 S3f S4 S5 S6 S7 S7h}"
BACKEND_PORT_SET=${BACKEND_PORT:+1}; GW_PORT_SET=${GW_PORT:+1}
BACKEND_PORT="${BACKEND_PORT:-19080}"
GW_PORT="${GW_PORT:-19081}"
CLIENT_CPU="${CLIENT_CPU:-0}"
GW_CPU="${GW_CPU:-1}"
BACKEND_CPU="${BACKEND_CPU:-$CLIENT_CPU}"        # shares the client's core; moved for S0
CONNS="${CONNS:-64}"
MAX_CONNS="${MAX_CONNS:-4096}"                   # gateway connection limit for load runs
AUTO_INSTALL="${AUTO_INSTALL:-1}"
START_TIMEOUT="${START_TIMEOUT:-15}"
NOISY_PCT="${NOISY_PCT:-10}"
QUIET_PCT="${QUIET_PCT:-10}"
CALLGRIND="${CALLGRIND:-1}"
IDLE="${IDLE:-1}"
LOAD="${LOAD:-1}"                                # 0: no wrk runs (callgrind and idle only)
IDLE_SYSTEMS="${IDLE_SYSTEMS:-}"                 # default: $SYSTEMS
# Defaults that --quick changes (an explicit environment value wins).
set_defaults() {
    if ((QUICK)); then
        : "${DURATION:=2s}" "${WARMUP:=1s}" "${QUIET_MAX:=0}" "${CALLGRIND_N:=2000}" "${IDLE_N:=500}"
        : "${CALLGRIND_SCENARIOS:=S1}" "${MAX_MINUTES:=5}"
    else
        : "${DURATION:=5s}" "${WARMUP:=1s}" "${QUIET_MAX:=3}" "${CALLGRIND_N:=20000}" "${IDLE_N:=10000}"
    fi
    : "${MAX_MINUTES:=8}" "${CALLGRIND_WARM:=200}" "${RS256_POOL:=2048}" "${CALLGRIND_SCENARIOS:=$SCENARIOS}"
}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# ---------------------------------------------------------------- scenarios
# Which template a scenario uses (S3f is S3's configuration under a different load).
scen_conf() { case $1 in S3f) echo S3 ;; S7h) echo S7 ;; *) echo "$1" ;; esac; }
scen_path() { case $1 in S5|S6) echo /cached ;; *) echo /api ;; esac; }
scen_scheme() { case $1 in S7|S7h) echo https ;; *) echo http ;; esac; }
# S7h: every request on a new connection, so each one costs a TLS handshake.
scen_new_connections() { [[ $1 == S7h ]]; }
scen_token() { case $1 in S2|S6) echo "$TOKEN_HS256" ;; S3) echo "$TOKEN_RS256" ;; esac; }
scen_url() { echo "$(scen_scheme "$1")://127.0.0.1:$2$(scen_path "$1")"; }
# callgrind request count: CALLGRIND_N for S1, the figure optimized against; fewer
# elsewhere, where the per-request count is just as exact after subtracting the
# warm-up-only run and a request may cost 5-100x more (njs HS256 ~125k
# instructions, RS256 0.4-2M): this keeps the run bounded.
scen_callgrind_n() {
    local n=$CALLGRIND_N
    case $1 in S1) ;; S2|S6) n=$((n / 20)) ;; S3|S3f|S7h) n=$((n / 200)) ;; *) n=$((n / 4)) ;; esac
    ((n < 20)) && n=20
    echo "$n"
}
# The whole run is bounded: callgrind runs that would start after MAX_MINUTES are
# skipped (and say so); the idle test and the report always run.
over_budget() { (( SECONDS > MAX_MINUTES * 60 )); }

# ---------------------------------------------------------------- systems
declare -A SYS_CMD SYS_DIR SYS_QUIT
SYS_DIR[sluice]="$BENCH_DIR/conf/sluice"
SYS_DIR[nginx]="$BENCH_DIR/conf/nginx"
SYS_DIR[haproxy]="$BENCH_DIR/conf/haproxy"
SYS_CMD[nginx]='nginx -p {run}/ -e {run}/gw-error.log -c {conf}'
SYS_CMD[haproxy]='haproxy -db -f {conf}'
# Stop signal under callgrind: a master that SIGKILLs workers slow to exit after
# TERM (nginx does after 1 s) would cut a worker's profile short; QUIT waits.
SYS_QUIT[nginx]=QUIT
SYS_QUIT[sluice]=QUIT
# SYS_CMD[sluice] is set by find_sluice.

find_sluice() {
    local bin builddir=${BUILDDIR:-objs}
    if [[ -n ${SLUICE_BIN:-} ]]; then
        bin=$SLUICE_BIN
        [[ -x $bin ]] || die "SLUICE_BIN=$bin is not an executable"
    else
        case $builddir in /*) bin="$builddir/sluice" ;; *) bin="$ROOT/$builddir/sluice" ;; esac
        if [[ ! -x $bin ]]; then
            log "building sluice: make BUILDDIR=$builddir build"
            make -C "$ROOT" --no-print-directory BUILDDIR="$builddir" build >"$WORK/build.log" 2>&1 ||
                die "build failed, see $WORK/build.log"
        fi
        local newer; newer=$(find "$ROOT/src" "$ROOT/modules" -name '*.cc' -newer "$bin" 2>/dev/null | head -1)
        [[ -n $newer ]] && log "note: $bin is older than $newer (run make build to measure the current code)"
    fi
    SLUICE_BIN=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
    SYS_CMD[sluice]="$SLUICE_BIN -p {run}/ -e {run}/gw-error.log -c {conf}"
}

need_tools() {
    local t pkgs=()
    declare -A pkg=([nginx]=nginx-light [haproxy]=haproxy [wrk]=wrk [taskset]=util-linux [openssl]=openssl
                    [curl]=curl [valgrind]=valgrind [python3]=python3 [make]=make)
    for t in nginx haproxy wrk taskset openssl curl python3 make; do command -v "$t" >/dev/null || pkgs+=("${pkg[$t]}"); done
    [[ -e /usr/lib/nginx/modules/ngx_http_js_module.so ]] || pkgs+=(libnginx-mod-http-js)
    ((CALLGRIND)) && ! command -v valgrind >/dev/null && pkgs+=(valgrind)
    ((${#pkgs[@]} == 0)) && return 0
    [[ $AUTO_INSTALL == 1 && $EUID == 0 ]] || die "missing: ${pkgs[*]} (apt-get install ${pkgs[*]})"
    log "installing ${pkgs[*]}"
    ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null || die "apt-get install failed"
    # Debian's postinst may start the packaged nginx/haproxy services where an init
    # system runs; they listen on :80 and do not touch our ports.
}

# ---------------------------------------------------------------- keys & tokens
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
mkjwt() { # alg exp signer-cmd...
    local h p
    h=$(printf '{"alg":"%s","typ":"JWT"}' "$1" | b64url)
    p=$(printf '{"sub":"bench-user","iss":"gwbench","scope":"api","exp":%s}' "$2" | b64url)
    shift 2
    printf '%s.%s.%s' "$h" "$p" "$(printf '%s.%s' "$h" "$p" | "$@" | b64url)"
}
gen_keys() {
    local k="$WORK/keys" far now s
    mkdir -p "$k"
    if [[ ! -s $k/tokens.env ]]; then
        log "generating HS256 secret, RSA-2048 key pair, TLS certificate and tokens in $k"
        openssl rand -hex 32 > "$k/hs256.secret"
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$k/rs256.key" 2>/dev/null
        openssl pkey -in "$k/rs256.key" -pubout -out "$k/rs256.pub.pem"
        openssl pkey -in "$k/rs256.key" -pubout -outform DER | openssl base64 -A > "$k/rs256.spki.b64"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
            -subj /CN=localhost -keyout "$k/tls.key" -out "$k/tls.crt" 2>/dev/null
        cat "$k/tls.crt" "$k/tls.key" > "$k/tls.pem"
        s=$(cat "$k/hs256.secret")
        now=$(date +%s); far=$((now + 10 * 365 * 86400))
        local hs=(openssl dgst -sha256 -mac HMAC -macopt "key:$s" -binary)
        local rs=(openssl dgst -sha256 -sign "$k/rs256.key" -binary)
        local t_hs t_rs
        t_hs=$(mkjwt HS256 "$far" "${hs[@]}")
        t_rs=$(mkjwt RS256 "$far" "${rs[@]}")
        {
            echo "TOKEN_EXP=$far"
            echo "TOKEN_HS256=$t_hs"
            echo "TOKEN_HS256_EXPIRED=$(mkjwt HS256 $((now - 3600)) "${hs[@]}")"
            echo "TOKEN_HS256_BADSIG=${t_hs%.*}.$(printf 'forged' | "${hs[@]}" | b64url)"
            echo "TOKEN_HS256_WRONGKEY=$(mkjwt HS256 "$far" openssl dgst -sha256 -mac HMAC -macopt key:not-the-secret -binary)"
            echo "TOKEN_RS256=$t_rs"
            echo "TOKEN_RS256_BADSIG=${t_rs%.*}.$(printf 'forged' | "${rs[@]}" | b64url)"
            echo "TOKEN_RS256_EXPIRED=$(mkjwt RS256 $((now - 3600)) "${rs[@]}")"
        } > "$k/tokens.env"
        rm -f "$k/rs256.pool"
    fi
    # shellcheck disable=SC1091
    source "$k/tokens.env"
    HS256_SECRET=$(cat "$k/hs256.secret"); HS256_SECRET_FILE="$k/hs256.secret"
    RS256_PUB_PEM="$k/rs256.pub.pem"
    RS256_SPKI_B64=$(cat "$k/rs256.spki.b64")
    TLS_CERT="$k/tls.crt"; TLS_KEY="$k/tls.key"; TLS_PEM="$k/tls.pem"
    TOKEN_POOL="$k/rs256.pool"
    if [[ " $SCENARIOS " == *" S3f "* ]] && (( $(cat "$TOKEN_POOL" 2>/dev/null | wc -l) < RS256_POOL )); then
        log "signing $RS256_POOL distinct RS256 tokens for S3f (once; kept in $k)"
        python3 "$BENCH_DIR/jwt_pool.py" "$k/rs256.key" "$RS256_POOL" "$TOKEN_EXP" "$TOKEN_POOL" || die "jwt_pool.py failed"
    fi
    [[ -s $TOKEN_POOL ]] && { head -n "$RS256_POOL" "$TOKEN_POOL" > "$WORK/rs256.pool.used"; TOKEN_POOL="$WORK/rs256.pool.used"; }
}

# ---------------------------------------------------------------- templates
# Placeholders: @@GW_PORT@@ @@BACKEND_PORT@@ @@WORKERS@@ @@RUN_DIR@@ @@CACHE_DIR@@
# @@CONF_SRC@@ @@MAX_CONNS@@ @@NOFILE@@ @@HS256_SECRET@@ @@HS256_SECRET_FILE@@ @@RS256_PUB_PEM@@
# @@RS256_SPKI_B64@@ @@TLS_CERT@@ @@TLS_KEY@@ @@TLS_PEM@@
render() { # template out rundir cachedir maxconns
    sed -e "s|@@GW_PORT@@|$GW_PORT|g" -e "s|@@BACKEND_PORT@@|$BACKEND_PORT|g" \
        -e "s|@@WORKERS@@|1|g" -e "s|@@RUN_DIR@@|$3|g" -e "s|@@CACHE_DIR@@|$4|g" \
        -e "s|@@CONF_SRC@@|$(dirname "$1")|g" -e "s|@@MAX_CONNS@@|$5|g" -e "s|@@NOFILE@@|$NOFILE|g" \
        -e "s|@@HS256_SECRET@@|${HS256_SECRET:-}|g" -e "s|@@HS256_SECRET_FILE@@|${HS256_SECRET_FILE:-}|g" \
        -e "s|@@RS256_PUB_PEM@@|${RS256_PUB_PEM:-}|g" \
        -e "s|@@RS256_SPKI_B64@@|${RS256_SPKI_B64:-}|g" -e "s|@@TLS_CERT@@|${TLS_CERT:-}|g" \
        -e "s|@@TLS_KEY@@|${TLS_KEY:-}|g" -e "s|@@TLS_PEM@@|${TLS_PEM:-}|g" \
        "$1" > "$2"
}
template_for() { # system scenario -> path, or fails
    local f
    for f in "${SYS_DIR[$1]}/$(scen_conf "$2")".*; do [[ -f $f ]] && { echo "$f"; return 0; }; done
    return 1
}
na_reason() { # system scenario
    if [[ $1 == sluice ]]; then echo "n/a (not built yet: no conf/sluice/$(scen_conf "$2").conf)"
    else echo "n/a (no template)"; fi
}
# prepare_gw SYSTEM SCENARIO TAG MAXCONNS: renders the template into $WORK/run/TAG and
# sets GW_CMD (foreground command line); fails without a template.
prepare_gw() {
    local sys=$1 s=$2 tag=$3 tmpl run cache cmd
    tmpl=$(template_for "$sys" "$s") || return 1
    run="$WORK/run/$tag"; cache="$CACHE_ROOT/$tag"
    rm -rf "$run" "$cache"; mkdir -p "$run" "$CACHE_ROOT"
    render "$tmpl" "$run/$(basename "$tmpl")" "$run" "$cache" "$4"
    cmd=${SYS_CMD[$sys]}
    cmd=${cmd//\{conf\}/$run/$(basename "$tmpl")}; cmd=${cmd//\{run\}/$run}
    GW_CMD=$cmd; GW_CACHE=$cache
}

# ---------------------------------------------------------------- processes
start_proc() { # LABEL CPUSET CMD: background, pinned; pid + start time in $WORK/pids/LABEL.pid
    local label=$1 cpus=$2 cmd=$3 pid
    mkdir -p "$WORK/pids"
    if [[ -n $cpus ]]; then taskset -c "$cpus" bash -c "exec $cmd" >"$WORK/$label.stdout" 2>&1 &
    else bash -c "exec $cmd" >"$WORK/$label.stdout" 2>&1 &
    fi
    pid=$!
    echo "$pid $(proc_start "$pid")" > "$WORK/pids/$label.pid"
    START_PID=$pid
}
proc_start() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }
alive() { # pid starttime: running (not zombie) and not a reused pid
    local st; st=$(awk '{print $3, $22}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $st && ${st%% *} != Z && ${st#* } == "$2" ]]
}
tree_pids() { # pid -> pid and all descendants
    local queue=("$1") p c
    while ((${#queue[@]})); do
        p=${queue[0]}; queue=("${queue[@]:1}")
        [[ -e /proc/$p ]] || continue
        echo "$p"
        for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do queue+=("$c"); done
    done
}
pid_cpu_ns() { # on-CPU ns of one process, all threads (schedstat, ns resolution)
    local f t sum=0
    for f in /proc/"$1"/task/*/schedstat; do read -r t _ < "$f" 2>/dev/null && sum=$((sum + t)); done
    echo "$sum"
}
tree_cpu_ns() { local p sum=0; for p in $(tree_pids "$1"); do sum=$((sum + $(pid_cpu_ns "$p"))); done; echo "$sum"; }
# The worker: the process of the tree that used the most CPU (the master, cache
# manager and loader processes barely run; HAProxy is a single process).
worker_pid() {
    local p best="" bc=-1 c
    for p in $(tree_pids "$1"); do c=$(pid_cpu_ns "$p"); ((c > bc)) && { bc=$c; best=$p; }; done
    echo "$best"
}
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
stop_proc() { # LABEL [SIGNAL]: SIGTERM (or SIGNAL) the recorded pid (+ leftover descendants), SIGKILL after 10s
    local f="$WORK/pids/$1.pid" sig=${2:-TERM} pid st kids=() k i
    [[ -f $f ]] || return 0
    read -r pid st < "$f"
    if alive "$pid" "$st"; then
        for k in $(tree_pids "$pid"); do [[ $k != "$pid" ]] && kids+=("$k:$(proc_start "$k")"); done
        kill -"$sig" "$pid" 2>/dev/null
        for ((i = 0; i < 100; i++)); do alive "$pid" "$st" || break; sleep 0.1; done
        alive "$pid" "$st" && { log "$1 ($pid) ignored SIG$sig, SIGKILL"; kill -KILL "$pid" 2>/dev/null; }
        # Leftover descendants (workers orphaned by a killed master) get 10 s more:
        # under valgrind a worker may still be writing its profile.
        for k in "${kids[@]}"; do
            for ((i = 0; i < 100; i++)); do alive "${k%%:*}" "${k##*:}" || break; sleep 0.1; done
            alive "${k%%:*}" "${k##*:}" && kill -KILL "${k%%:*}" 2>/dev/null
        done
        wait "$pid" 2>/dev/null
    fi
    rm -f "$f"
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port pid timeout_s
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        port_open "$1" && return 0
        [[ -e /proc/$2 ]] || return 1
        sleep 0.1
    done
    return 1
}
wait_port_free() { local i; for ((i = 0; i < 100; i++)); do port_open "$1" || return 0; sleep 0.1; done; return 1; }
pick_ports() {
    local b g
    if port_open "$BACKEND_PORT" || port_open "$GW_PORT"; then
        [[ -n $BACKEND_PORT_SET || -n $GW_PORT_SET ]] && die "port $BACKEND_PORT or $GW_PORT already in use"
        for b in 29080 39080 49080 59080; do
            g=$((b + 1))
            if ! port_open $b && ! port_open $g; then
                log "ports $BACKEND_PORT/$GW_PORT are taken by something else: using $b/$g"
                BACKEND_PORT=$b; GW_PORT=$g; return 0
            fi
        done
        die "no free port pair"
    fi
}
cpu_busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8, $9}' /proc/stat; }  # busy steal (USER_HZ)
wait_quiet() { # other engineers share this machine: wait (<= QUIET_MAX s) for a calm second
    local i a b s1 s2 pct
    for ((i = 0; i < QUIET_MAX; i++)); do
        read -r a s1 < <(cpu_busy_ticks); sleep 1; read -r b s2 < <(cpu_busy_ticks)
        pct=$(( (b - a) * 100 / ($(nproc) * 100) ))
        ((pct < QUIET_PCT)) && return 0
        ((i == 0)) && log "machine busy (${pct}% of all CPUs, not us): waiting up to ${QUIET_MAX}s"
    done
}
cleanup() {
    local f
    for f in "$WORK"/pids/*.pid; do [[ -f $f ]] && stop_proc "$(basename "$f" .pid)"; done
    rm -rf "$CACHE_ROOT"
}

# ---------------------------------------------------------------- backend
start_backend() {
    stop_proc backend
    mkdir -p "$WORK/backend"
    render "$BENCH_DIR/conf/backend/backend.conf" "$WORK/backend/nginx.conf" "$WORK/backend" - "$MAX_CONNS"
    start_proc backend "$BACKEND_CPU" "nginx -p $WORK/backend/ -e $WORK/backend/error.log -c $WORK/backend/nginx.conf"
    BACKEND_PID=$START_PID
    wait_port "$BACKEND_PORT" "$BACKEND_PID" 10 || die "backend did not start: $(cat "$WORK/backend.stdout")"
}
pin_backend() { local p; for p in $(tree_pids "$BACKEND_PID"); do taskset -a -p -c "$1" "$p" >/dev/null; done; }
backend_requests() { # the backend's request counter; counts this status request too
    curl -s --max-time 5 "http://127.0.0.1:$BACKEND_PORT/__backend_status" | awk 'NR==3{print $3}'
}

# ---------------------------------------------------------------- checks
code() { # url [token] -> HTTP status
    local a=(-k -s -o /dev/null -w '%{http_code}' --max-time 5)
    [[ -n ${2:-} ]] && a+=(-H "Authorization: Bearer $2")
    curl "${a[@]}" "$1"
}
# Functional checks a system must pass for a scenario: prints "ok" or "FAIL ...".
check_scenario() { # scenario port
    local s=$1 url bad=() c b0 b1 i tok
    url=$(scen_url "$s" "$2"); tok=$(scen_token "$s")
    [[ $s == S3f ]] && tok=$(head -1 "$TOKEN_POOL")
    expect() { c=$(code "$url" "${2:-}"); [[ $c == "$1" ]] || bad+=("$3:$c!=$1"); }
    case $s in
        S0|S1|S4|S5|S7|S7h) expect 200 "" plain ;;
        S2|S6) expect 401 "" none; expect 401 "$TOKEN_HS256_BADSIG" badsig
               expect 401 "$TOKEN_HS256_WRONGKEY" wrongkey; expect 401 "$TOKEN_HS256_EXPIRED" expired
               expect 401 "$TOKEN_RS256" rs256-token; expect 200 "$TOKEN_HS256" valid ;;
        S3|S3f) expect 401 "" none; expect 401 "$TOKEN_RS256_BADSIG" badsig
                expect 401 "$TOKEN_RS256_EXPIRED" expired; expect 401 "$TOKEN_HS256" hs256-token
                expect 200 "$TOKEN_RS256" valid ;;
    esac
    if [[ $s == S3f ]]; then
        expect 200 "$(head -1 "$TOKEN_POOL")" pool-first; expect 200 "$(tail -1 "$TOKEN_POOL")" pool-last
    fi
    if [[ $s == S5 || $s == S6 ]]; then     # cache: 20 more requests must not reach the backend
        code "$url" "$tok" >/dev/null
        b0=$(backend_requests)
        for ((i = 0; i < 20; i++)); do code "$url" "$tok" >/dev/null; done
        b1=$(backend_requests)
        (( b1 - b0 - 1 == 0 )) || bad+=("cache:$((b1 - b0 - 1))/20-reached-backend")
    fi
    if [[ $s != S0 ]]; then                 # the body must be the backend's
        local body
        body=$(curl -k -s --max-time 5 ${tok:+-H "Authorization: Bearer $tok"} "$url")
        [[ $body == *'"status":"ok"'* && $body == *'"service":"upstream"'* ]] || bad+=("body")
    fi
    ((${#bad[@]})) && echo "FAIL ${bad[*]}" || echo ok
}

# ---------------------------------------------------------------- load (wrk)
to_us() { # "1.23ms" -> microseconds
    awk -v v="$1" 'BEGIN{ u=v; sub(/[0-9.]+/,"",u); n=v+0;
        if(u=="us")f=1; else if(u=="ms")f=1000; else if(u=="s")f=1e6; else if(u=="m")f=6e7; else f=0;
        printf "%.0f", n*f }'
}
parse_wrk() { # file -> "rps p50_us p99_us requests non2xx sockerr"
    local f=$1 rps p50 p99 req non2xx err
    rps=$(awk '/^Requests\/sec:/{print $2}' "$f")
    p50=$(to_us "$(awk '$1=="50%"{print $2}' "$f")")
    p99=$(to_us "$(awk '$1=="99%"{print $2}' "$f")")
    req=$(awk '/requests in/{print $1}' "$f")
    non2xx=$(awk '/Non-2xx/{print $NF}' "$f"); non2xx=${non2xx:-0}
    err=$(awk -F'[ ,]+' '/Socket errors/{print $4+$6+$8+$10}' "$f"); err=${err:-0}
    echo "${rps:-0} ${p50:-0} ${p99:-0} ${req:-0} $non2xx $err"
}
wrk_cmd() { # scenario url duration [first pool token]
    local s=$1 url=$2 d=$3 tok c
    tok=$(scen_token "$s")
    c=(timeout $(( ${d%s} + 30 )) taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"$d" --latency)
    [[ -n $tok ]] && c+=(-H "Authorization: Bearer $tok")
    [[ $s == S3f ]] && c+=(-s "$BENCH_DIR/token_pool.lua")
    scen_new_connections "$s" && c+=(-H "Connection: close")
    BENCH_TOKENS="$TOKEN_POOL" BENCH_TOKEN_START="${4:-0}" "${c[@]}" "$url"
}
record() { # sys scen "rps p50 p99 req non2xx err" gwcpu% us/req backend/req rss_kb check other% steal%
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$(tr ' ' '\t' <<<"$3")" "$4" "$5" "$6" "$7" "$8" \
        "${9:-}" "${10:-}" >> "$RESULTS/results.tsv"
}
# run_load SYSTEM SCENARIO: start (unless S0), check, warm up, measure, stop; one row.
run_load() {
    local sys=$1 s=$2 tag="$1-$2" pid port chk url raw="$RESULTS/raw"
    mkdir -p "$raw"
    if [[ $s == S0 ]]; then
        port=$BACKEND_PORT; pid=$BACKEND_PID
        pin_backend "$GW_CPU"
    else
        if ! prepare_gw "$sys" "$s" "$tag" "$MAX_CONNS"; then
            record "$sys" "$s" "0 0 0 0 0 0" 0 0 0 0 "$(na_reason "$sys" "$s")"; return
        fi
        port=$GW_PORT
        port_open "$GW_PORT" && die "port $GW_PORT busy before starting $tag"
        start_proc gw "$GW_CPU" "$GW_CMD"; pid=$START_PID
        if ! wait_port "$GW_PORT" "$pid" "$START_TIMEOUT"; then
            log "$tag: did not start: $(tail -c 600 "$WORK/gw.stdout")"
            record "$sys" "$s" "0 0 0 0 0 0" 0 0 0 0 "FAIL start"
            stop_proc gw; return
        fi
    fi
    url=$(scen_url "$s" "$port")
    chk=$(check_scenario "$s" "$port")
    [[ $chk == ok ]] || log "$tag: functional check: $chk"
    wait_quiet
    wrk_cmd "$s" "$url" "$WARMUP" > "$raw/$tag.warmup.txt" 2>&1
    # S3f: the measured run continues the token cycle where the warm-up stopped
    local next; next=$(awk '/requests in/{print $1}' "$raw/$tag.warmup.txt")
    local c0 c1 b0 b1 t0 t1 k0 k1 st0 st1 bk0=0 bk1=0 wcpu rss TIMEFORMAT='%3U %3S'
    b0=$(backend_requests); c0=$(tree_cpu_ns "$pid")
    [[ $s != S0 ]] && bk0=$(tree_cpu_ns "$BACKEND_PID")
    read -r k0 st0 < <(cpu_busy_ticks); t0=$(date +%s%N)
    wcpu=$( { time wrk_cmd "$s" "$url" "$DURATION" "${next:-0}" > "$raw/$tag.txt" 2>&1; } 2>&1 )
    t1=$(date +%s%N); read -r k1 st1 < <(cpu_busy_ticks)
    c1=$(tree_cpu_ns "$pid"); [[ $s != S0 ]] && bk1=$(tree_cpu_ns "$BACKEND_PID")
    b1=$(backend_requests)
    rss=$(rss_kb "$(worker_pid "$pid")")
    echo "wrk user/sys s: $wcpu" >> "$raw/$tag.txt"
    wcpu=$(awk -v a="$wcpu" 'BEGIN{split(a,x," "); printf "%.0f", (x[1]+x[2])*1e9}')
    # CPU used by everything but gateway, backend and wrk (other users, kernel
    # threads) in % of one CPU (10 ms ticks), and what the hypervisor stole.
    local other steal
    other=$(awk -v k=$((k1 - k0)) -v g=$((c1 - c0)) -v b=$((bk1 - bk0)) -v w="$wcpu" -v t=$((t1 - t0)) \
        'BEGIN{o=(k*1e7-g-b-w)/t*100; printf "%.0f", o<0?0:o}')
    steal=$(awk -v k=$((st1 - st0)) -v t=$((t1 - t0)) 'BEGIN{printf "%.0f", k*1e7/t*100}')
    if [[ $s == S0 ]]; then pin_backend "$BACKEND_CPU"; else stop_proc gw; wait_port_free "$GW_PORT"; rm -rf "$GW_CACHE"; fi
    local m errs=""; m=$(parse_wrk "$raw/$tag.txt")
    set -- $m
    (( $5 > 0 )) && errs+=" non2xx=$5"
    (( $6 > 0 )) && errs+=" sockerr=$6"
    (( $4 == 0 )) && errs+=" no-requests"
    [[ -n $errs ]] && chk="FAIL${chk#FAIL}" && chk="${chk/#FAILok/FAIL}${errs}"
    local d=$((c1 - c0)) wall=$((t1 - t0))
    record "$sys" "$s" "$m" \
        "$(awk -v d="$d" -v w="$wall" 'BEGIN{printf "%.0f", 100*d/w}')" \
        "$(awk -v d="$d" -v r="$4" 'BEGIN{printf "%.2f", r?d/r/1000:0}')" \
        "$(awk -v b="$((b1 - b0 - 1))" -v r="$4" 'BEGIN{printf "%.3f", r?b/r:0}')" "$rss" "$chk" "$other" "$steal"
    log "$(printf '%-8s %-4s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  %6s us/req  others %s%% steal %s%%  [%s]' \
        "$sys" "$s" "$1" "$(awk -v u="$2" 'BEGIN{print u/1000}')" "$(awk -v u="$3" 'BEGIN{print u/1000}')" \
        "$(tail -1 "$RESULTS/results.tsv" | cut -f10)" "$other" "$steal" "$chk")"
}

# ---------------------------------------------------------------- callgrind
# User-space instructions/request: the gateway runs under callgrind twice (warm-up
# only; warm-up + N requests) and the difference of total Ir over all its processes
# is divided by N. Requests are sequential on ONE keep-alive connection (curl with N
# URLs; wrk cannot stop after N requests), so nothing is batched. Kernel work
# (syscalls, TCP) is not counted.
fixed_requests() { # scenario url n [first pool token] -> "status N: count" lines and "connects: K"
    local s=$1 url=$2 n=$3 first=${4:-0} cfg="$WORK/fixed.curlrc" tok i
    tok=$(scen_token "$s")
    if [[ $s == S3f ]]; then     # a different token per request: one option section per URL
        local pool=() m
        mapfile -t pool < "$TOKEN_POOL"; m=${#pool[@]}
        for ((i = 0; i < n; i++)); do
            printf 'silent\ninsecure\nwrite-out = "%%{http_code} %%{num_connects}\\n"\nheader = "Authorization: Bearer %s"\nurl = "%s"\noutput = "/dev/null"\n' \
                "${pool[(first + i) % m]}" "$url"
            ((i + 1 < n)) && echo next
        done > "$cfg"
    else
        {
            echo silent; echo insecure; echo 'write-out = "%{http_code} %{num_connects}\n"'
            [[ -n $tok ]] && echo "header = \"Authorization: Bearer $tok\""
            scen_new_connections "$s" && echo 'header = "Connection: close"'
            for ((i = 0; i < n; i++)); do echo "url = \"$url\""; echo 'output = "/dev/null"'; done
        } > "$cfg"
    fi
    timeout 1200 taskset -c "$CLIENT_CPU" curl -K "$cfg" |
        awk '{c[$1]++; k+=$2} END{for(x in c) printf "status %s: %d\n", x, c[x]; print "connects:", k}'
}
callgrind_ir() { # sys scen n outdir -> total Ir (all processes); -1 if a profile is incomplete
    local sys=$1 s=$2 n=$3 out=$4 pid url
    prepare_gw "$sys" "$s" "cg-$sys-$s-$n" "$MAX_CONNS" || return 1
    mkdir -p "$out"; rm -f "$out"/callgrind.out.*
    start_proc gw "$GW_CPU" "valgrind -q --tool=callgrind --callgrind-out-file=$out/callgrind.out.%p $GW_CMD"
    pid=$START_PID
    wait_port "$GW_PORT" "$pid" 120 || { log "callgrind $sys $s: did not start: $(tail -c 600 "$WORK/gw.stdout")"; stop_proc gw; return 1; }
    url=$(scen_url "$s" "$GW_PORT")
    fixed_requests "$s" "$url" "$CALLGRIND_WARM" > "$out/warm.txt"
    if ((n > 0)); then
        local b0 b1; b0=$(backend_requests)
        fixed_requests "$s" "$url" "$n" "$CALLGRIND_WARM" > "$out/measure.txt"   # S3f: unseen tokens
        b1=$(backend_requests); echo "backend requests: $((b1 - b0 - 1))" >> "$out/measure.txt"
    fi
    stop_proc gw "${SYS_QUIT[$sys]:-TERM}"; wait_port_free "$GW_PORT"; rm -rf "$GW_CACHE"
    local f
    for f in "$out"/callgrind.out.*; do   # a process killed while writing leaves no totals
        grep -q '^totals:' "$f" 2>/dev/null || { log "callgrind $sys $s: incomplete profile $f"; echo -1; return; }
    done
    awk '/^totals:/{s+=$2} END{print s+0}' "$out"/callgrind.out.* 2>/dev/null
}
run_callgrind() { # sys scen: one row of instructions.tsv
    local sys=$1 s=$2 n a b ipr ok bk chk="ok" dir="$RESULTS/callgrind/$1-$2"
    n=$(scen_callgrind_n "$s")
    if ! template_for "$sys" "$s" >/dev/null; then
        printf '%s\t%s\t\t\t\t\t%s\n' "$sys" "$s" "$(na_reason "$sys" "$s")" >> "$RESULTS/instructions.tsv"; return
    fi
    if over_budget; then
        printf '%s\t%s\t\t%s\t\t\t%s\n' "$sys" "$s" "$n" "skipped (MAX_MINUTES=$MAX_MINUTES reached)" >> "$RESULTS/instructions.tsv"
        log "callgrind $sys $s: skipped, the run is over MAX_MINUTES=$MAX_MINUTES"; return
    fi
    log "callgrind $sys $s: warm-up ($CALLGRIND_WARM requests) only, then warm-up + $n"
    a=$(callgrind_ir "$sys" "$s" 0 "$WORK/cg-base")
    b=$(callgrind_ir "$sys" "$s" "$n" "$dir")
    ok=$(awk '/^status 200:/{print $3}' "$dir/measure.txt" 2>/dev/null)
    bk=$(awk '/^backend requests:/{print $3}' "$dir/measure.txt" 2>/dev/null)
    ipr=$(awk -v a="${a:-0}" -v b="${b:-0}" -v n="$n" 'BEGIN{printf "%.0f", (a>0&&b>a)?(b-a)/n:0}')
    [[ ${ok:-0} == "$n" ]] || chk="FAIL 200s=${ok:-0}/$n"
    if [[ $s == S5 || $s == S6 ]] && (( ${bk:-1} > 0 )); then chk="FAIL backend=$bk"; fi
    [[ $ipr == 0 ]] && chk="FAIL no measurement"
    [[ $a == -1 || $b == -1 ]] && { ipr=0; chk="FAIL incomplete profile"; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$s" "$ipr" "$n" "${ok:-0}" "${bk:-}" "$chk" >> "$RESULTS/instructions.tsv"
    log "  -> $sys $s: $ipr instructions/request (user space) [$chk]"
    # A profile of where sluice's instructions go (see README: Profiling).
    if [[ $sys == sluice ]] && command -v callgrind_annotate >/dev/null; then
        local w; w=$(ls -S "$dir"/callgrind.out.* 2>/dev/null | head -1)
        [[ -n $w ]] && { callgrind_annotate --inclusive=yes "$w" > "$dir/inclusive.txt" 2>/dev/null
                         callgrind_annotate "$w" > "$dir/self.txt" 2>/dev/null; }
    fi
}

# ---------------------------------------------------------------- idle connections
# Memory per idle keep-alive connection: S1 configuration, warm-up under wrk, then
# IDLE_N connections each make one request and stay open; (worker RSS after -
# before) / connections. User-space memory only (socket buffers are the kernel's).
run_idle() {
    local sys=$1 pid wpid rss0 rss1 ready="$WORK/idle.ready" res ok failed i
    if ! prepare_gw "$sys" S1 "idle-$sys" $((IDLE_N + 1024)); then
        printf '%s\t%s\t\t\t\t\t%s\n' "$sys" "$IDLE_N" "$(na_reason "$sys" S1)" >> "$RESULTS/idle.tsv"; return
    fi
    start_proc gw "$GW_CPU" "$GW_CMD"; pid=$START_PID
    if ! wait_port "$GW_PORT" "$pid" "$START_TIMEOUT"; then
        log "idle $sys: did not start: $(tail -c 600 "$WORK/gw.stdout")"; stop_proc gw
        printf '%s\t%s\t\t\t\t\t%s\n' "$sys" "$IDLE_N" "FAIL start" >> "$RESULTS/idle.tsv"; return
    fi
    wrk_cmd S1 "$(scen_url S1 "$GW_PORT")" 1s > "$RESULTS/raw/idle-$sys.warmup.txt" 2>&1
    sleep 1
    wpid=$(worker_pid "$pid"); rss0=$(rss_kb "$wpid")
    rm -f "$ready"
    start_proc idle "$CLIENT_CPU" "python3 $BENCH_DIR/idle_conns.py $GW_PORT /api $IDLE_N $ready 120"
    for ((i = 0; i < 1200; i++)); do [[ -s $ready ]] && break; alive_label idle || break; sleep 0.1; done
    sleep 1
    rss1=$(rss_kb "$wpid")
    read -r ok failed < "$ready" 2>/dev/null || { ok=0; failed=$IDLE_N; }
    stop_proc idle; stop_proc gw; wait_port_free "$GW_PORT"; rm -rf "$GW_CACHE"
    local chk=ok; ((failed > 0 || ok == 0)) && chk="FAIL $failed of $IDLE_N failed or closed"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$IDLE_N" "$ok" "$rss0" "$rss1" \
        "$(awk -v a="$rss0" -v b="$rss1" -v n="$ok" 'BEGIN{printf "%.0f", n?(b-a)*1024/n:0}')" "$chk" >> "$RESULTS/idle.tsv"
    log "idle $sys: $ok connections, worker RSS $rss0 -> $rss1 kB ($(tail -1 "$RESULTS/idle.tsv" | cut -f6) B/conn) [$chk]"
}
alive_label() { local f="$WORK/pids/$1.pid" pid st; [[ -f $f ]] && read -r pid st < "$f" && alive "$pid" "$st"; }

# ---------------------------------------------------------------- report
report() {
    local tsv="$RESULTS/results.tsv" ins="$RESULTS/instructions.tsv" idle="$RESULTS/idle.tsv"
    {
        echo "### sluice benchmark $(basename "$RESULTS")$( ((QUICK)) && echo ' (QUICK: smoke check only)')"
        echo
        echo "One worker per system pinned to CPU $GW_CPU; wrk (-t1 -c$CONNS, $DURATION after $WARMUP warm-up) and the" \
             "backend on CPU $CLIENT_CPU. instr/req: callgrind, user space, N sequential keep-alive requests." \
             "CPU µs/req: the gateway's on-CPU time (user+sys, all processes) per request. req/s is noisy on a" \
             "shared machine (see noise); instructions are the figure to optimize against."
        echo
        awk -F'\t' -v ins="$ins" -v noisy="$NOISY_PCT" '
            BEGIN { while ((getline l < ins) > 0) { split(l, f, "\t"); if (f[1] == "system") continue
                        ir[f[1], f[2]] = f[3]; n[f[1], f[2]] = f[4]; ichk[f[1], f[2]] = f[7] } }
            NR == 1 { next }
            { sys = $1; s = $2; seen[s]++; if (seen[s] == 1) order[++ns] = s
              if (!((s, sys) in row)) sysl[s] = sysl[s] " " sys
              row[s, sys] = 1; rps[s, sys] = $3; p50[s, sys] = $4; p99[s, sys] = $5; us[s, sys] = $10
              rss[s, sys] = $12; chk[s, sys] = $13; oth[s, sys] = $14; stl[s, sys] = $15 }
            function cell_ir(sys, s) { return ((sys, s) in ir && ir[sys, s] != "") ? ir[sys, s] : "" }
            function ratio(a, b) { return (a + 0 > 0 && b + 0 > 0) ? sprintf("%.2f", a / b) : "" }
            END {
              print "| scenario | system | req/s | p50 ms | p99 ms | CPU µs/req | instr/req | worker RSS MiB | noise: others/steal % | check |"
              print "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
              for (j = 1; j <= ns; j++) { s = order[j]; k = split(substr(sysl[s], 2), sl, " ")
                for (i = 1; i <= k; i++) { sys = sl[i]
                  c = chk[s, sys]; ic = ((sys, s) in ichk) ? ichk[sys, s] : ""
                  if (ic != "" && ic != "ok" && ic !~ /^n\/a/) c = c "; callgrind " ic
                  if (rps[s, sys] + 0 == 0) { printf "| %s | %s | | | | | %s | | | %s |\n", s, sys, cell_ir(sys, s), c; continue }
                  flag = (oth[s, sys] + 0 > noisy || stl[s, sys] + 0 > noisy) ? " ~" : ""
                  printf "| %s | %s | %.0f | %.2f | %.2f | %.1f | %s | %.1f | %s/%s%s | %s |\n", s, sys, rps[s, sys],
                         p50[s, sys] / 1000, p99[s, sys] / 1000, us[s, sys], cell_ir(sys, s), rss[s, sys] / 1024,
                         oth[s, sys], stl[s, sys], flag, c } }
              print ""
              print "Ratios, same run (req/s: higher is better for sluice; CPU µs and instructions: lower is better):"
              print ""
              print "| scenario | req/s sluice/nginx | req/s sluice/HAProxy | CPU µs sluice/nginx | CPU µs sluice/HAProxy | instr sluice/nginx | instr sluice/HAProxy |"
              print "|---|---:|---:|---:|---:|---:|---:|"
              for (j = 1; j <= ns; j++) { s = order[j]; if (s == "S0") continue
                if (rps[s, "sluice"] + 0 == 0 && cell_ir("sluice", s) == "") { printf "| %s | n/a | n/a | n/a | n/a | n/a | n/a |\n", s; continue }
                printf "| %s | %s | %s | %s | %s | %s | %s |\n", s, ratio(rps[s, "sluice"], rps[s, "nginx"]),
                       ratio(rps[s, "sluice"], rps[s, "haproxy"]), ratio(us[s, "sluice"], us[s, "nginx"]),
                       ratio(us[s, "sluice"], us[s, "haproxy"]), ratio(cell_ir("sluice", s), cell_ir("nginx", s)),
                       ratio(cell_ir("sluice", s), cell_ir("haproxy", s)) } }' "$tsv"
        if [[ -s $ins ]]; then
            echo
            echo "Instructions/request detail (N requests on one keep-alive connection; 200s; backend requests during the N):"
            echo
            echo "| system | scenario | instr/req | N | 200s | backend requests | check |"
            echo "|---|---|---:|---:|---:|---:|---|"
            awk -F'\t' 'NR>1{printf "| %s | %s | %s | %s | %s | %s | %s |\n",$1,$2,$3,$4,$5,$6,$7}' "$ins"
        fi
        if [[ -s $idle ]]; then
            echo
            echo "Memory per idle keep-alive connection (S1 configuration; each connection made one request; worker RSS, user space only):"
            echo
            echo "| system | connections | idle & open | worker RSS before MiB | with idle conns MiB | bytes/idle connection | check |"
            echo "|---|---:|---:|---:|---:|---:|---|"
            awk -F'\t' 'NR>1{ if ($4 == "") { printf "| %s | %s | | | | | %s |\n",$1,$2,$7; next }
                printf "| %s | %s | %s | %.1f | %.1f | %s | %s |\n",$1,$2,$3,$4/1024,$5/1024,$6,$7}' "$idle"
        fi
        echo
        echo "~ = other processes used, or the hypervisor stole, more than ${NOISY_PCT}% of a CPU during the run."
        echo "Raw wrk output: raw/; callgrind profiles: callgrind/<system>-<scenario>/ (sluice: self.txt, inclusive.txt)."
    } > "$RESULTS/table.md"
    cat "$RESULTS/table.md"
}
env_info() {
    {
        echo "date: $(date -Is)"; echo "kernel: $(uname -r)"; echo "cpus: $(nproc) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
        echo "sluice: $SLUICE_BIN ($("$SLUICE_BIN" -v 2>&1 | head -1)); git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' +local changes')"
        echo "nginx: $(nginx -v 2>&1)"; echo "njs: $(dpkg-query -W -f='${Version}' libnginx-mod-http-js 2>/dev/null)"
        echo "haproxy: $(haproxy -v | head -1)"; echo "wrk: $(dpkg-query -W -f='${Version}' wrk 2>/dev/null)"
        echo "valgrind: $(valgrind --version 2>/dev/null)"
        echo "loadavg before: $(cat /proc/loadavg)"
        echo "ports: backend $BACKEND_PORT, gateway $GW_PORT"
        echo "settings: QUICK=$QUICK DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS GW_CPU=$GW_CPU CLIENT_CPU=$CLIENT_CPU" \
             "MAX_MINUTES=$MAX_MINUTES CALLGRIND_N=$CALLGRIND_N CALLGRIND_SCENARIOS='$CALLGRIND_SCENARIOS' IDLE_N=$IDLE_N RS256_POOL=$RS256_POOL SYSTEMS='$SYSTEMS' SCENARIOS='$SCENARIOS'"
    } > "$RESULTS/env.txt"
}

main() {
    while (($#)); do
        case $1 in
            --quick) QUICK=1 ;;
            --systems) SYSTEMS=$2; shift ;;
            --scenarios) SCENARIOS=$2; shift ;;
            --duration) DURATION=$2; shift ;;
            --no-callgrind) CALLGRIND=0 ;;
            --no-idle) IDLE=0 ;;
            --no-load) LOAD=0 ;;
            -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
            *) die "unknown argument $1 (see --help)" ;;
        esac; shift
    done
    set_defaults
    [[ $(nproc) -ge 2 ]] || die "needs 2 CPUs"
    mkdir -p "$WORK"
    need_tools
    [[ " $SYSTEMS " == *" sluice "* ]] && find_sluice
    NOFILE=$(ulimit -Hn); [[ $NOFILE == unlimited ]] && NOFILE=65536
    ulimit -n "$NOFILE" 2>/dev/null
    if ((IDLE_N + 1100 > NOFILE)); then
        IDLE_N=$((NOFILE - 1100)); log "hard ulimit -n is $NOFILE: idle test with $IDLE_N connections"
    fi
    cleanup                                    # leftovers of an interrupted run (our pids only)
    rm -rf "$WORK/run" "$WORK/cg-base"
    trap 'cleanup' EXIT
    trap 'exit 130' INT TERM
    pick_ports
    gen_keys
    RESULTS="$RESULTS_ROOT/$(date +%Y%m%d-%H%M%S)"; mkdir -p "$RESULTS/raw"
    printf 'system\tscenario\trps\tp50_us\tp99_us\trequests\tnon2xx\tsock_errors\tgw_cpu_pct\tcpu_us_per_req\tbackend_req_per_req\tworker_rss_kb\tcheck\tother_cpu_pct\tsteal_pct\n' \
        > "$RESULTS/results.tsv"
    printf 'system\tscenario\tinstructions_per_request\tN\tstatus_200\tbackend_requests\tcheck\n' > "$RESULTS/instructions.tsv"
    printf 'system\tconnections\tidle_open\trss_before_kb\trss_after_kb\tbytes_per_conn\tcheck\n' > "$RESULTS/idle.tsv"
    env_info
    start_backend
    log "results -> $RESULTS"
    local s sys
    for s in $SCENARIOS; do
        ((LOAD)) || break
        if [[ $s == S0 ]]; then run_load backend S0; continue; fi
        for sys in $SYSTEMS; do run_load "$sys" "$s"; done
    done
    if ((CALLGRIND)); then
        if command -v valgrind >/dev/null; then
            for s in $SCENARIOS; do
                [[ $s == S0 || " $CALLGRIND_SCENARIOS " != *" $s "* ]] && continue
                for sys in $SYSTEMS; do run_callgrind "$sys" "$s"; done
            done
        else
            log "valgrind missing: no instructions/request"
        fi
    fi
    if ((IDLE)); then
        for sys in ${IDLE_SYSTEMS:-$SYSTEMS}; do run_idle "$sys"; done
    fi
    report
}

main "$@"
