#!/bin/sh
# Runs every test binary of the build and prints one summary line:
#   N passed, N failed
# The integration tests mostly wait on daemons and sockets, so they run as
# SLUICE_TEST_SHARDS gtest shards side by side (default 3; 1 runs them in one
# process). Every test picks its own ports and directories, so shards do not
# meet.
BUILDDIR=${BUILDDIR:-objs}
SHARDS=${SLUICE_TEST_SHARDS:-3}
export SLUICE_BIN=${SLUICE_BIN:-$BUILDDIR/sluice}
export SLUICE_TEST_UPSTREAM=${SLUICE_TEST_UPSTREAM:-$BUILDDIR/test_upstream}
export SLUICE_TEST_DNS=${SLUICE_TEST_DNS:-$BUILDDIR/test_dns}
logs=$BUILDDIR/test-logs
rm -rf "$logs"
mkdir -p "$logs"
passed=0
failed=0

# Runs one binary (or one shard of it) into a log; its exit status in LOG.rc.
run_one() {  # binary log [shard-index]
    if [ -n "$3" ]; then
        GTEST_TOTAL_SHARDS=$SHARDS GTEST_SHARD_INDEX=$3 "$1" --gtest_color=no >"$2" 2>&1
    else
        "$1" --gtest_color=no >"$2" 2>&1
    fi
    echo $? >"$2.rc"
}

# Adds one log's results to the totals and shows its failures.
count_log() {  # log name
    rc=$(cat "$1.rc" 2>/dev/null || echo 1)
    # Show failures and the summary, not every passing test.
    grep -E '^\[  FAILED  \]|^\[  PASSED  \]|^\[  SKIPPED \]|Failure|error:|AddressSanitizer|runtime error' "$1" | head -200
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$1" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*, listed below.*/\1/p' "$1" | tail -1)
    if [ -z "$p" ] && [ -z "$f" ]; then
        # The binary died before its summary: count it as one failure.
        echo "t/run.sh: $2 exited with status $rc before finishing; see $1" >&2
        tail -20 "$1"
        f=1
    fi
    [ "$rc" -ne 0 ] && [ -z "$f" ] && f=1
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
}

for t in unit_tests integration_tests; do
    bin=$BUILDDIR/$t
    echo "=== $t"
    if [ ! -x "$bin" ]; then
        echo "t/run.sh: $bin is missing" >&2
        failed=$((failed + 1))
        continue
    fi
    if [ "$t" = integration_tests ] && [ "$SHARDS" -gt 1 ]; then
        i=0
        while [ "$i" -lt "$SHARDS" ]; do
            run_one "$bin" "$logs/$t.$i.log" "$i" &
            i=$((i + 1))
        done
        wait
        i=0
        while [ "$i" -lt "$SHARDS" ]; do
            count_log "$logs/$t.$i.log" "$t shard $i"
            i=$((i + 1))
        done
    else
        run_one "$bin" "$logs/$t.log"
        count_log "$logs/$t.log" "$t"
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
