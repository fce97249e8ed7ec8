# The pass/fail tally of the deployment test scripts (e2e.sh,
# prometheus-test.sh): each check calls pass or fail with what it saw, and
# the script ends with tally_summary, which prints 'N passed, M failed'
# and returns non-zero if anything failed. Sourced after lib.sh (say).
passed=0
failed=0
pass() {
    passed=$((passed + 1))
    say "PASS $*"
}
fail() {
    failed=$((failed + 1))
    say "FAIL $*"
}
tally_summary() {
    printf '%s passed, %s failed\n' "$passed" "$failed"
    ((failed == 0))
}
