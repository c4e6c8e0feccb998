#!/usr/bin/env bash
# The backfill benchmark. Prints, from one run on this machine:
#   1. the orchestration overhead per no-op partition (lease, run record, engine, Delta
#      commit, catalog), over 1,000 daily partitions, release build, SQLite + local folder:
#      the median of three rounds;
#   2. the reference workload of ../shared/bench (365 days x 20,000 rows, clean_orders then
#      daily_revenue) run by `sluice backfill`, next to DuckDB's single pass over the same
#      data and SQL, measured back to back, as a ratio: the median of three rounds.
#
#   3. the CPU an idle daemon with 50 scheduled jobs uses between ticks;
#   4. promote time on a 10-row and a 10M-row table, as a ratio.
#
# usage: bench/run.sh [noop|reference|idle|promote|all]      (default: all)
# Every time is printed beside the peak resident memory (RSS) of the process timed.
# SLUICE_BENCH_BASELINE=/path/to/sluice: the noop rounds run that binary too, interleaved,
# and print this build's time as a ratio of it (a regression check against an older build).
# Needs python3 with duckdb (pip install duckdb deltalake pyarrow). Generated data is kept
# in $SLUICE_BENCH_DATA (default ~/.cache/sluice-bench) between runs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
shared="$(cd "$repo/../shared/bench" 2>/dev/null && pwd || true)"
what="${1:-all}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
data="${SLUICE_BENCH_DATA:-$HOME/.cache/sluice-bench}"
concurrency="${SLUICE_BENCH_CONCURRENCY:-2}"
baseline="${SLUICE_BENCH_BASELINE:-}"
mkdir -p "$data"

python3 -c 'import duckdb, deltalake, pyarrow' 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check duckdb deltalake pyarrow

(cd "$repo" && cargo build --release --quiet)
sluice="$CARGO_TARGET_DIR/release/sluice"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

now() { python3 -c 'import time; print(time.time())'; }

# Three rounds, each on a fresh project; the figure is their median. With
# SLUICE_BENCH_BASELINE=/path/to/another/sluice, every round runs that binary too, beside
# this build's (first in every other round), so drift on the machine and any advantage of
# going second hit both alike, and the figure is a ratio.
noop() {
    local rounds="${SLUICE_BENCH_NOOP_ROUNDS:-3}" r
    for r in $(seq 1 "$rounds"); do
        if [ -n "$baseline" ] && [ $((r % 2)) = 0 ]; then
            noop_round "$r" baseline "$baseline"
            noop_round "$r" this "$sluice"
        else
            noop_round "$r" this "$sluice"
            [ -z "$baseline" ] || noop_round "$r" baseline "$baseline"
        fi
    done
    python3 - "$work" "$rounds" "$baseline" <<'PY'
import sys, statistics
work, rounds, baseline = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def figures(who):
    ms = [float(open(f"{work}/noop-{who}-{r}.ms").read()) for r in range(1, rounds + 1)]
    kib = [int(open(f"{work}/noop-{who}-{r}.rss").read()) for r in range(1, rounds + 1)]
    return ms, kib
ms, kib = figures("this")
print(f"noop: median {statistics.median(ms):.2f} ms per partition over {len(ms)} rounds "
      f"({', '.join(f'{m:.2f}' for m in ms)}), peak RSS {max(kib) / 1024:.0f} MiB; target <= 3 ms")
if baseline:
    bms, bkib = figures("baseline")
    print(f"noop baseline ({baseline}): median {statistics.median(bms):.2f} ms "
          f"({', '.join(f'{m:.2f}' for m in bms)}), peak RSS {max(bkib) / 1024:.0f} MiB; "
          f"this build / baseline: {statistics.median(ms) / statistics.median(bms):.3f}")
PY
}

# usage: noop_round ROUND WHO BINARY
noop_round() {
    local p="$work/noop-$2-$1" bin="$3"
    mkdir -p "$p/jobs" "$p/migrations"
    cat > "$p/migrations/0001_create_noop.sql" <<'SQL'
CREATE TABLE noop (x BIGINT, dt DATE NOT NULL) PARTITIONED BY (dt);
SQL
    cat > "$p/jobs/noop.toml" <<'TOML'
description = "No rows, no inputs: what is left is sluice's own work per partition"
version = 1
[partitioning]
granularity = "daily"
[output]
table = "noop"
TOML
    echo 'SELECT CAST(1 AS BIGINT) AS x WHERE false' > "$p/jobs/noop.sql"
    "$bin" --project "$p" migrate -q > /dev/null
    local t0 t1
    t0=$(now)
    /usr/bin/time -f %M -o "$p.rss" \
        "$bin" --project "$p" backfill --from 2021-01-01 --to 2023-09-27 --concurrency "$concurrency" --output json -q > "$p.json"
    t1=$(now)
    python3 - "$p.json" "$t0" "$t1" "$concurrency" "$1 ($2)" "$p.ms" "$p.rss" <<'PY'
import json, sys, statistics
s = json.load(open(sys.argv[1])); t0, t1, c, r = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
rss = int(open(sys.argv[7]).read().split()[-1])
open(sys.argv[7], "w").write(str(rss))
d = [i["duration_ms"] for i in s["items"] if i["outcome"] == "succeeded"]
assert len(d) == 1000, f"{len(d)} partitions succeeded"
ms = 1000 * (t1 - t0) / len(d)
open(sys.argv[6], "w").write(str(ms))
print(f"noop round {r}: {len(d)} partitions at concurrency {c}: {ms:.2f} ms per partition "
      f"(wall time / partitions, planning included), peak RSS {rss / 1024:.0f} MiB; each "
      f"partition's own latency: median {statistics.median(d):.1f} ms, p90 "
      f"{sorted(d)[int(len(d)*0.9)]:.1f} ms (includes waiting for a compute slot and for the "
      f"table's commit)")
PY
    rm -rf "$p"
}

reference() {
    [ -n "$shared" ] || { echo "reference: ../shared/bench not found beside the repository" >&2; return 1; }
    local orders="$data/orders-365x20000"
    if [ ! -f "$orders/dt=2024-12-30/orders.csv" ]; then
        echo "generating the reference data (365 days x 20,000 rows) into $orders ..." >&2
        python3 "$shared/gen_orders.py" "$orders" 2024-01-01 365 20000
    fi
    local rounds="${SLUICE_BENCH_REFERENCE_ROUNDS:-3}" r
    for r in $(seq 1 "$rounds"); do reference_round "$r" "$orders"; done
    python3 - "$work"/reference-*.ratio <<'PY'
import sys, statistics
x = [float(open(f).read()) for f in sys.argv[1:]]
print(f"reference: median ratio {statistics.median(x):.2f}x over {len(x)} rounds "
      f"({', '.join(f'{v:.2f}' for v in x)}); target <= 1.3x")
PY
}

# One round: sluice's backfill on a fresh project, then DuckDB's single pass, back to back.
reference_round() {
    local p="$work/reference-$1" orders="$2"
    mkdir -p "$p/jobs" "$p/migrations"
    # The same SQL as DuckDB's single pass (shared/bench/duckdb_floor.py).
    cat > "$p/migrations/0001_tables.sql" <<'SQL'
CREATE TABLE clean_orders (
    order_id BIGINT, order_ts TIMESTAMP, customer_id BIGINT, region STRING, category STRING,
    quantity INT, unit_price DOUBLE, amount DOUBLE, status STRING, dt DATE NOT NULL
) PARTITIONED BY (dt);
CREATE TABLE daily_revenue (
    dt DATE NOT NULL, region STRING, category STRING, revenue DOUBLE, orders BIGINT, customers BIGINT
) PARTITIONED BY (dt);
SQL
    cat > "$p/jobs/clean_orders.toml" <<TOML
version = 1
[partitioning]
granularity = "daily"
[[inputs]]
name = "orders"
path = "$orders/dt={partition}/orders.csv"
schema = ["order_id BIGINT", "order_ts TIMESTAMP", "customer_id BIGINT", "region STRING",
          "category STRING", "quantity INT", "unit_price DOUBLE", "status STRING"]
[output]
table = "clean_orders"
TOML
    cat > "$p/jobs/clean_orders.sql" <<'SQL'
SELECT order_id, order_ts, customer_id, region, category, quantity, unit_price,
       quantity * unit_price AS amount, status
FROM orders WHERE status <> 'cancelled'
SQL
    cat > "$p/jobs/daily_revenue.toml" <<'TOML'
version = 1
[partitioning]
granularity = "daily"
[[inputs]]
name = "clean_orders"
table = "clean_orders"
[output]
table = "daily_revenue"
TOML
    cat > "$p/jobs/daily_revenue.sql" <<'SQL'
SELECT dt, region, category, sum(amount) AS revenue, count(*) AS orders,
       count(DISTINCT customer_id) AS customers
FROM clean_orders GROUP BY dt, region, category
SQL
    "$sluice" --project "$p" migrate -q > /dev/null
    local t0 t1
    t0=$(now)
    /usr/bin/time -f %M -o "$p.rss" \
        "$sluice" --project "$p" backfill --from 2024-01-01 --to 2024-12-30 --concurrency "$concurrency" -q > "$p.txt"
    t1=$(now)
    # Check the result against the reference figures, with an independent reader.
    python3 - "$p/warehouse" <<'PY'
import sys
from deltalake import DeltaTable
import pyarrow.compute as pc
w = sys.argv[1]
co = DeltaTable(f"{w}/clean_orders/v1").to_pyarrow_table(columns=["order_id"])
dr = DeltaTable(f"{w}/daily_revenue/v1").to_pyarrow_table(columns=["revenue"])
rev = pc.sum(dr["revenue"]).as_py()
ok = co.num_rows == 6570238 and dr.num_rows == 35040 and abs(rev - 1005531328.66) < 0.01
print(f"reference result: clean_orders {co.num_rows} rows, daily_revenue {dr.num_rows} rows, "
      f"sum(revenue) {rev:.2f}: {'as expected' if ok else 'NOT the expected 6570238 / 35040 / 1005531328.66'}", flush=True)
# The deltalake package can abort while the interpreter tears down its runtime threads.
import os; os._exit(0 if ok else 1)
PY
    local floor
    floor=$(/usr/bin/time -f %M -o "$p-duckdb.rss" python3 "$shared/duckdb_floor.py" "$orders" "$p-duckdb-out" | tee /dev/stderr | sed -n 's/.*total=\([0-9.]*\)s.*/\1/p')
    python3 - "$t0" "$t1" "$floor" "$concurrency" "$1" "$p.ratio" "$p.rss" "$p-duckdb.rss" <<'PY'
import sys
t0, t1, floor, c, r = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
rss, duck_rss = (int(open(f).read().split()[-1]) / 1024 for f in sys.argv[7:9])
s = t1 - t0
open(sys.argv[6], "w").write(str(s / floor))
print(f"reference round {r}: sluice backfill {s:.2f} s, peak RSS {rss:.0f} MiB (concurrency {c}); "
      f"DuckDB single pass {floor:.2f} s, peak RSS {duck_rss:.0f} MiB (python3 included); "
      f"ratio {s/floor:.2f}x")
PY
    rm -rf "$p" "$p-duckdb-out"
}

# CPU used by an idle daemon: 50 scheduled jobs, none due during the measurement (their
# start is tomorrow), over $SLUICE_BENCH_IDLE_SECONDS (default 60) seconds, from
# /proc/PID/stat. Next to it, the same figure for `sleep`, the floor of any process.
idle() {
    local p="$work/idle" seconds="${SLUICE_BENCH_IDLE_SECONDS:-60}"
    mkdir -p "$p/jobs" "$p/migrations"
    local tomorrow zones=(UTC Europe/Berlin America/New_York Asia/Tokyo Australia/Sydney)
    tomorrow=$(python3 -c 'import datetime; print(datetime.date.today() + datetime.timedelta(days=1))')
    for i in $(seq -w 1 50); do
        echo "CREATE TABLE idle_$i (x BIGINT, dt DATE NOT NULL) PARTITIONED BY (dt);" > "$p/migrations/00${i}_idle_$i.sql"
        cat > "$p/jobs/idle_$i.toml" <<TOML
version = 1
start = "$tomorrow"
[schedule]
cron = "$((10#$i % 60)) $((10#$i % 24)) * * *"
time_zone = "${zones[$((10#$i % 5))]}"
[partitioning]
granularity = "daily"
[output]
table = "idle_$i"
TOML
        echo 'SELECT CAST(1 AS BIGINT) AS x WHERE false' > "$p/jobs/idle_$i.sql"
    done
    "$sluice" --project "$p" migrate -q > /dev/null
    "$sluice" --project "$p" daemon --metrics-address off -q 2> "$work/idle.log" &
    local pid=$!
    sleep 5
    sleep "$seconds" &
    local peer=$!
    local a b
    a=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    sleep "$seconds"
    b=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    local hwm
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
    local peer_ticks
    peer_ticks=$(awk '{print $14 + $15}' "/proc/$peer/stat" 2>/dev/null || echo 0)
    kill -TERM "$pid"; wait "$pid" || true
    wait "$peer" 2>/dev/null || true
    python3 - "$a" "$b" "$seconds" "$(getconf CLK_TCK)" "$peer_ticks" "$hwm" <<'PY'
import sys
a, b, s, hz, peer, hwm = (float(x) for x in sys.argv[1:7])
cpu = (b - a) / hz
print(f"idle daemon, 50 jobs: {cpu*1000:.0f} ms CPU in {s:.0f} s = {100*cpu/s:.3f}% of one core "
      f"(`sleep` beside it: {1000*peer/hz:.0f} ms), peak RSS {hwm / 1024:.0f} MiB")
PY
}

# Promote time against table size: a 10-row and a 10,000,000-row table, each with v1 live and
# v2 built; promote and rollback alternate 20 times per table. A promote is a catalog
# transaction: its time should not depend on the data.
promote() {
    local p="$work/promote" rounds=20
    mkdir -p "$p/jobs" "$p/migrations"
    for t in small:10 big:10000000; do
        local name=${t%%:*} n=${t##*:}
        echo "CREATE TABLE $name (x BIGINT);" > "$p/migrations/000$([ "$name" = small ] && echo 1 || echo 2)_$name.sql"
        printf 'version = 1\n[partitioning]\ngranularity = "none"\n[output]\ntable = "%s"\n' "$name" > "$p/jobs/$name.toml"
        echo "SELECT value AS x FROM generate_series(1, $n)" > "$p/jobs/$name.sql"
    done
    "$sluice" --project "$p" migrate -q > /dev/null
    for v in 1 2; do
        sed -i "s/^version = .*/version = $v/" "$p"/jobs/*.toml
        for t in small big; do "$sluice" --project "$p" run "$t" --partition all -q > /dev/null; done
    done
    python3 - "$sluice" "$p" "$rounds" <<'PY'
import subprocess, sys, time, statistics
sluice, p, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
def flip(args):
    t = time.perf_counter()
    subprocess.run([sluice, "--project", p, *args, "-q"], check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000
times = {"small": [], "big": []}
for _ in range(rounds):
    for t in ("small", "big"):          # interleaved, so drift hits both alike
        times[t].append(flip(["promote", t, "--version", "2"]))
        times[t].append(flip(["rollback", t]))
import json
tables = json.loads(subprocess.run([sluice, "--project", p, "tables", "--output", "json"], check=True,
                                   capture_output=True).stdout)
rows = {(t["table"], t["version"]): t["rows"] for t in tables}
assert rows[("small", 2)] == 10 and rows[("big", 2)] == 10_000_000, rows
s, b = statistics.median(times["small"]), statistics.median(times["big"])
print(f"promote: 10-row table {s:.1f} ms, 10,000,000-row table {b:.1f} ms (median of {2*rounds} "
      f"promotes and rollbacks each, process start included): ratio {b/s:.2f}; peak RSS of "
      f"any of them {__import__('resource').getrusage(__import__('resource').RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MiB")
PY
}

case "$what" in
    noop) noop ;;
    reference) reference ;;
    idle) idle ;;
    promote) promote ;;
    all) noop; reference; idle; promote ;;
    *) echo "usage: bench/run.sh [noop|reference|idle|promote|all]" >&2; exit 2 ;;
esac
