#!/usr/bin/env bash
# The scale benchmark: a catalog of a million partitions (100 hourly jobs x 10,000 hours,
# 10 runs each: 10 million runs) made by examples/gen_catalog.rs, and what sluice does over
# it, each time beside the same over a catalog of 10,000 partitions (100 jobs x 100 hours,
# the peer: the figure at a hundredth of the size), measured in the same sitting:
#   gen: the generator's time and the catalog's size per run;
#   poll: the daemon's polls over a replay of the next hours (the new hour of every job
#      run), median, p99 and longest (target: p99 <= 50 ms);
#   status: `status g000` (target <= 200 ms) and `status` of the whole project as JSON
#      (target <= 2 s, memory flat);
#   grid: the web view's overview of 100 jobs x 200 hours (20,000 cells), server time
#      (Server-Timing), best of five (target <= 300 ms);
#   plan: `backfill --force --dry-run` of 10,000 partitions (100 jobs x 100 hours; target
#      <= 1 s) and of all of them (target <= 60 s, <= 512 MiB).
# Every time is printed beside the peak RSS of the process timed.
#
# usage: bench/scale.sh [sqlite|postgres|all]   (default: sqlite)
# postgres needs SLUICE_BENCH_PG_URL: a server URL whose user may create databases
# (postgres://user:password@127.0.0.1:5432/postgres); each catalog gets a database of its
# own, dropped at the end. SLUICE_BENCH_SCALE_PARTITIONS (default 10000) and
# SLUICE_BENCH_SCALE_RUNS (default 10) size the big catalog.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
what="${1:-sqlite}"
partitions="${SLUICE_BENCH_SCALE_PARTITIONS:-10000}"
runs="${SLUICE_BENCH_SCALE_RUNS:-10}"
jobs=100

# The generator is built without --release: an example in a release build would bring the
# dev-dependencies' features into it and rebuild every crate a second time; unoptimized it
# writes about 30,000 runs a second, which is enough.
(cd "$repo" && cargo build --quiet --example gen_catalog)
gen="$CARGO_TARGET_DIR/debug/examples/gen_catalog"
work="$(mktemp -d)"
dbs=()
cleanup() {
    rm -rf "$work"
    for db in "${dbs[@]}"; do psql -q "$SLUICE_BENCH_PG_URL" -c "DROP DATABASE IF EXISTS $db" > /dev/null 2>&1 || true; done
}
trap cleanup EXIT

# usage: timed OUT_PREFIX COMMAND...: runs it, writes OUT_PREFIX.s (wall seconds) and
# OUT_PREFIX.kib (peak RSS); its stdout goes to OUT_PREFIX.out.
timed() {
    local out="$1"; shift
    /usr/bin/time -f "%e %M" -o "$out.time" "$@" > "$out.out" 2> "$out.err" || { tail -n 20 "$out.err" >&2; return 1; }
    read -r s kib < <(tail -n 1 "$out.time")
    echo "$s" > "$out.s"; echo "$kib" > "$out.kib"
}
say() { printf '%s: %.3f s, peak RSS %d MiB' "$1" "$(cat "$2.s")" $(( $(cat "$2.kib") / 1024 )); }

# usage: catalog BACKEND NAME PARTITIONS: a generated project in $work/NAME; prints nothing.
catalog() {
    local p="$work/$2" url=()
    if [ "$1" = postgres ]; then
        local db="sluice_scale_$2_$$"
        psql -q "$SLUICE_BENCH_PG_URL" -c "CREATE DATABASE $db" > /dev/null
        dbs+=("$db")
        url=(--catalog "${SLUICE_BENCH_PG_URL%/*}/$db")
    fi
    timed "$work/$2-gen" "$gen" --out "$p" --jobs "$jobs" --partitions "$3" --runs "$runs" --sluice "$sluice" "${url[@]}"
}

# usage: measure BACKEND NAME PARTITIONS
measure() {
    local b="$1" n="$2" parts="$3" p="$work/$2"
    catalog "$b" "$n" "$parts"
    local size=""
    if [ "$b" = sqlite ]; then
        size=$(python3 -c "import os,sys; print(f'{os.path.getsize(sys.argv[1]) / (int(sys.argv[2]) * int(sys.argv[3]) * int(sys.argv[4])):.0f} bytes per run')" \
            "$p/.sluice/catalog.db" "$jobs" "$parts" "$runs")
    fi
    echo "$(say "$b $n gen ($jobs jobs x $parts partitions x $runs runs)" "$work/$n-gen")${size:+, $size}"
    # The daemon over the next hours: the newest partition is the last complete hour's.
    local from to
    from=$(date -u +%Y-%m-%dT%H:00:00Z); to=$(date -u -d "+2 hours" +%Y-%m-%dT%H:00:00Z)
    timed "$work/$n-poll" "$sluice" --project "$p" -q daemon --replay "$from..$to" --max-concurrency 2
    echo "$(say "$b $n daemon replay $from..$to" "$work/$n-poll"): $(grep ' poll(s)' "$work/$n-poll.out")"
    timed "$work/$n-status1" "$sluice" --project "$p" status g000
    echo "$(say "$b $n status g000" "$work/$n-status1")"
    timed "$work/$n-statusall" "$sluice" --project "$p" status --output json
    echo "$(say "$b $n status --output json (all $((jobs * parts)) partitions)" "$work/$n-statusall")"
    local last first100
    last=$(date -u -d "-1 hour" +%Y-%m-%dT%H); first100=$(date -u -d "-100 hours" +%Y-%m-%dT%H)
    timed "$work/$n-plan1" "$sluice" --project "$p" backfill --from "$first100" --to "$last" --force --dry-run --output json
    echo "$(say "$b $n backfill --dry-run of $((jobs * 100)) partitions" "$work/$n-plan1")"
    timed "$work/$n-planall" "$sluice" --project "$p" backfill --from "$(date -u -d "-$parts hours" +%Y-%m-%dT%H)" --to "$last" --force --dry-run --output json
    echo "$(say "$b $n backfill --dry-run of all $((jobs * parts)) partitions" "$work/$n-planall")"
    local port ui
    port=$(free_port)
    "$sluice" --project "$p" ui --address "127.0.0.1:$port" > "$work/$n-ui.log" 2>&1 &
    ui=$!
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.1; done
    local b5=999999 t
    for _ in 1 2 3 4 5; do
        t=$(curl -s -D - -o /dev/null "http://127.0.0.1:$port/?from=$(date -u -d "-200 hours" +%Y-%m-%dT%H)&to=$last" | tr -d '\r' | sed -n 's/^server-timing: render;dur=//ip')
        b5=$(python3 -c "print(min($b5, ${t:-999999}))")
    done
    echo "$b $n grid of $jobs jobs x 200 hours: ${b5} ms server time, best of 5; ui peak RSS $(( $(peak_kib "$ui") / 1024 )) MiB"
    kill "$ui"; wait "$ui" 2>/dev/null || true
    rm -rf "$p"
}

backend() {
    measure "$1" small 100
    measure "$1" big "$partitions"
}

case "$what" in
    sqlite) backend sqlite ;;
    postgres) backend postgres ;;
    all) backend sqlite; backend postgres ;;
    *) echo "usage: bench/scale.sh [sqlite|postgres|all]" >&2; exit 2 ;;
esac
