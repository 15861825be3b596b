#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what is
# missing, checks the layering of bridge/ (tools/check_layers.sh), builds a release and an ASan+UBSan build, runs every ctest test in
# the release build and every unit test in the ASan build (the integration
# tests against real Prosody/ejabberd run once, in the release build), builds
# the codec once more against an expat header without the reparse-deferral
# switch (tools/check_expat_fallback.sh), builds the Debian packages and checks
# them with lintian, the install tree, the systemd unit and the alert rules
# (tools/check_package.sh), runs each libFuzzer target briefly, and runs
# cppcheck on our sources. Everything after the release build runs beside the
# release tests, at nice 19 (about 10 minutes on 2 cores in all).
#   XPB_FUZZ_SECONDS=600 bash tools/test.sh   # longer fuzzing
#   XPB_SKIP_FUZZ=1 bash tools/test.sh        # no fuzzing
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
. tools/deps.sh
xpb_install_deps $XPB_TEST_PKGS
xpb_upgrade_parsers

jobs=$(nproc 2>/dev/null || echo 2)
t0=$SECONDS
step() { printf '\n==== %s (at %d s) ====\n' "$*" $((SECONDS - t0)); }

step "layering check"
bash tools/check_layers.sh

step "release build"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DXPB_WERROR=ON >/dev/null
cmake --build build/release -j "$jobs"

# The other builds and their checks run beside the release tests, at the
# lowest CPU priority (nice 19): the integration tests spend most of their
# time waiting on servers and leave a core idle, and they keep the CPU when
# both want it. Their output is kept and printed once they are done.
others() {
    step "packages, install tree, unit and alert rules"
    bash tools/check_package.sh

    step "codec against an expat without XML_SetReparseDeferralEnabled"
    bash tools/check_expat_fallback.sh build/expat-fallback

    step "ASan+UBSan build + tests"
    cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DXPB_SANITIZE=ON >/dev/null
    cmake --build build/asan -j "$jobs"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --test-dir build/asan --output-on-failure -j "$jobs" -LE integration

    if [ -z "${XPB_SKIP_FUZZ:-}" ]; then
        secs=${XPB_FUZZ_SECONDS:-20}
        step "libFuzzer smoke run (${secs}s per target)"
        CC=clang cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DXPB_SANITIZE=ON -DXPB_FUZZ=ON \
            -DBUILD_TESTING=ON >/dev/null
        cmake --build build/fuzz -j "$jobs" --target fuzz_reader fuzz_record fuzz_session fuzz_bus_request
        for f in fuzz_reader fuzz_record fuzz_session fuzz_bus_request; do
            work=$(mktemp -d)
            cp tests/fuzz/seeds/"$f"/* "$work"/ 2>/dev/null || true
            (cd "$work" && "$top/build/fuzz/tests/$f" -max_total_time="$secs" -max_len=65536 \
                -print_final_stats=1 "$work" 2>&1 | tail -n 12)
            rm -rf "$work"
        done
    fi

    step "cppcheck"
    cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
        --suppress=missingIncludeSystem -I codec codec tools bridge
}
others_log=$(mktemp)
# Its own process group: stopped whole if the release tests fail.
setsid -w nice -n 19 bash -c "set -euo pipefail; top='$top'; t0=$t0; jobs=$jobs; SECONDS=$SECONDS
$(declare -f step others); others" >"$others_log" 2>&1 &
others_pid=$!
stop_others() {
    if kill -- -"$others_pid" 2>/dev/null; then
        echo "test.sh: stopped the checks beside the release tests; their output so far:" >&2
        tail -n 20 "$others_log" >&2
    fi
    rm -f "$others_log"
}
trap stop_others EXIT

step "release tests (packages, ASan, fuzzing and cppcheck run beside them: pid $others_pid)"
ctest --test-dir build/release --output-on-failure -j "$jobs"

step "waiting for the builds and checks that ran beside the tests"
rc=0
wait "$others_pid" || rc=$?
cat "$others_log"
if [ "$rc" -ne 0 ]; then
    echo "test.sh: the checks beside the release tests failed (exit $rc; output above)" >&2
    exit "$rc"
fi

step "all tests passed"
