#!/bin/sh
# Runs every test binary of the build and prints one summary line:
#   N passed, N failed
BUILDDIR=${BUILDDIR:-objs}
export SLUICE_BIN=${SLUICE_BIN:-$BUILDDIR/sluice}
export SLUICE_TEST_UPSTREAM=${SLUICE_TEST_UPSTREAM:-$BUILDDIR/test_upstream}
export SLUICE_TEST_DNS=${SLUICE_TEST_DNS:-$BUILDDIR/test_dns}
logs=$BUILDDIR/test-logs
rm -rf "$logs"
mkdir -p "$logs"
passed=0
failed=0
for t in unit_tests integration_tests; do
    bin=$BUILDDIR/$t
    echo "=== $t"
    if [ ! -x "$bin" ]; then
        echo "t/run.sh: $bin is missing" >&2
        failed=$((failed + 1))
        continue
    fi
    "$bin" --gtest_color=no >"$logs/$t.log" 2>&1
    rc=$?
    # Show failures and the summary, not every passing test.
    grep -E '^\[  FAILED  \]|^\[  PASSED  \]|^\[  SKIPPED \]|Failure|error:|AddressSanitizer|runtime error' "$logs/$t.log" | head -200
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$logs/$t.log" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*, listed below.*/\1/p' "$logs/$t.log" | tail -1)
    if [ -z "$p" ] && [ -z "$f" ]; then
        # The binary died before its summary: count it as one failure.
        echo "t/run.sh: $t exited with status $rc before finishing; see $logs/$t.log" >&2
        tail -20 "$logs/$t.log"
        f=1
    fi
    [ "$rc" -ne 0 ] && [ -z "$f" ] && f=1
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
