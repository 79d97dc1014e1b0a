#!/bin/sh
# make fuzz [FUZZ_SECONDS=N]: builds every libFuzzer target with clang
# (ASan + UBSan) and runs each for N seconds (default 60) on its corpus in
# t/fuzz/corpus/NAME. Crashes are written to t/fuzz/artifacts/.
# FUZZ_TARGETS="fuzz_uri fuzz_chunked" limits the run to those targets (one
# at a time, as always: on a shared machine, run it under nice).
set -e
seconds=${1:-60}
SLUICE_DEPS_FUZZ=1 sh contrib/deps.sh
out=objs/fuzz
mkdir -p "$out" t/fuzz/artifacts

# target: the sources it links (a parser is fuzzed alone, without the daemon)
sources_for() {
    case "$1" in
        fuzz_request|fuzz_response|fuzz_uri) echo "src/http/http_parse.cc src/http/uri.cc" ;;
        fuzz_chunked) echo "src/http/http_chunked.cc" ;;
        fuzz_config) echo "src/core/conf_file.cc src/core/conf_values.cc" ;;
        fuzz_cache_policy) echo "src/http/http_cache_policy.cc src/http/http_parse.cc src/http/uri.cc src/core/http_date.cc" ;;
        fuzz_accept_encoding) echo "-Imodules/gzip modules/gzip/accept_encoding.cc" ;;
        fuzz_jwt) echo "modules/auth_jwt/jwt_keys.cc modules/auth_jwt/jwt_token.cc -ljansson -ljwt -lcrypto" ;;
        *) echo "t/fuzz/run.sh: no sources listed for $1" >&2; exit 1 ;;
    esac
}

status=0
for f in t/fuzz/fuzz_*.cc; do
    name=$(basename "$f" .cc)
    if [ -n "$FUZZ_TARGETS" ]; then
        case " $FUZZ_TARGETS " in *" $name "*) ;; *) continue ;; esac
    fi
    corpus=t/fuzz/corpus/${name#fuzz_}
    mkdir -p "$corpus"
    echo "=== $name: building"
    clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        -Isrc -o "$out/$name" "$f" $(sources_for "$name")
    echo "=== $name: running ${seconds}s on $corpus"
    # A scratch copy of the corpus keeps new inputs out of the repository.
    work=$out/$name.corpus
    rm -rf "$work" && mkdir -p "$work"
    if ! "$out/$name" -max_total_time="$seconds" -print_final_stats=1 \
            -artifact_prefix=t/fuzz/artifacts/"$name"- "$work" "$corpus" 2>"$out/$name.log"; then
        echo "$name FAILED; see $out/$name.log and t/fuzz/artifacts/"
        tail -40 "$out/$name.log"
        status=1
    else
        grep -E "stat::number_of_executed_runs|cov:" "$out/$name.log" | tail -2
    fi
done
exit $status
