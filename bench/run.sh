#!/usr/bin/env bash
# The backfill benchmark. Prints, from one run on this machine:
#   noop: the orchestration overhead per no-op partition (lease, run record, engine, Delta
#      commit, catalog), over 8,760 hourly partitions, release build, SQLite + local folder:
#      the median of three rounds;
#   noopscale: the same per partition over 87,600 hourly partitions (or
#      SLUICE_BENCH_NOOPSCALE_PARTITIONS), as a ratio of 8,760's;
#   cost: what measuring each run's cost costs: no-op partitions and the reference workload
#      with `[engine] measure_cost` on and off, interleaved, as ratios; and the CPU time the
#      reference's runs recorded beside what the OS counted for the process;
#   reference: the reference workload of ../shared/bench (365 days x 20,000 rows,
#      clean_orders then daily_revenue) run by `sluice backfill`, next to DuckDB's single
#      pass over the same data and SQL, measured back to back, as a ratio: the median of
#      three rounds;
#   idle: the CPU an idle daemon with 50 scheduled jobs uses between ticks;
#   promote: promote time on a 10-row and a 10M-row table, as a ratio;
#   bigpart: one day of 15M, then 45M rows under memory_limit_mb = 256 with a unique check,
#      beside DuckDB's COPY of the same day under the same limit, as a ratio;
#   cluster: the reference workload on a local Ballista cluster (a scheduler and two
#      executors, all `sluice ballista`), beside the embedded engine, as a ratio;
#   watch: one daemon poll that checks 10,000 complete hourly partitions' input files for
#      changes (`watch_inputs`, a local folder), as the time of a replay with it beside the
#      same replay without it; and the catalog's growth per run for what runs read (the
#      sample month: a day from a file, a day from an upstream day, a month from 31 days).
#   grid: the web view's grid of 10,000 hourly partitions (1,000 complete) on its time axis:
#      the server's time to build and render it (its Server-Timing header), best of five,
#      beside the same page of the 1,000 complete hours alone; the server's peak RSS.
#
#   scale: a catalog of a million partitions and ten million runs, and the daemon's polls,
#      `status`, the grid and backfill planning over it, beside the same at 10,000
#      partitions (bench/scale.sh; SLUICE_BENCH_SCALE_BACKEND=postgres with
#      SLUICE_BENCH_PG_URL for PostgreSQL).
#   merge: a day of 1M changes merged into a 30M-row table of 365 days, beside a replace of
#      the day and Python deltalake's merge (bench/merge.sh);
#   command: 10M rows from a program as a command input, beside the program writing a file
#      and a file input of it (bench/command.sh);
#   postgres: 5M rows of one partition from a PostgreSQL input, beside psql \copy to CSV and
#      a file input of it (bench/postgres.sh; needs SLUICE_BENCH_PG_URL).
#   env: `env create` over 500 tables beside a one-table promote (bench/env.sh).
#
# usage: bench/run.sh [noop|noopscale|cost|reference|idle|promote|bigpart|cluster|watch|grid|scale|merge|command|postgres|env|all]  (default: all)
# Every time is printed beside the peak resident memory (RSS) of the process timed.
# SLUICE_BENCH_BASELINE=/path/to/sluice: the noop rounds run that binary too, interleaved,
# and print this build's time as a ratio of it (a regression check against an older build).
# Needs python3 with duckdb (pip install duckdb deltalake pyarrow). Generated data is kept
# in $SLUICE_BENCH_DATA (default ~/.cache/sluice-bench) between runs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
shared="$(cd "$repo/../shared/bench" 2>/dev/null && pwd || true)"
what="${1:-all}"
data="${SLUICE_BENCH_DATA:-$HOME/.cache/sluice-bench}"
concurrency="${SLUICE_BENCH_CONCURRENCY:-2}"
baseline="${SLUICE_BENCH_BASELINE:-}"
mkdir -p "$data"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Both binaries measured from fresh copies: the pages of a binary the page cache holds are
# mapped around each fault and count in its RSS (4 to 14 MiB here), so a binary built a
# minute ago would otherwise look bigger than one built hours ago.
cp "$sluice" "$work/sluice-measured"; sluice="$work/sluice-measured"
baseline_named="$baseline"
if [ -n "$baseline" ]; then cp "$baseline" "$work/sluice-baseline"; baseline="$work/sluice-baseline"; fi

now() { python3 -c 'import time; print(time.time())'; }
# A project folder: jobs/, migrations/ and, unless it has one, a sluice.toml of defaults (a
# folder without one is not a project); a part that needs settings writes its own.
new_project() {
    mkdir -p "$1/jobs" "$1/migrations"
    [ -f "$1/sluice.toml" ] || echo "# a benchmark project: the defaults" > "$1/sluice.toml"
}

# No-op partitions: sluice's own cost per partition (lease, run record, engine, Delta commit,
# catalog). A year of hours, 8,760 partitions, three rounds, each on a fresh project; the
# figure is their median. With SLUICE_BENCH_BASELINE=/path/to/another/sluice, every round
# runs that binary too, beside this build's (first in every other round), so drift on the
# machine and any advantage of going second hit both alike, and the figure is a ratio.
noop() {
    local rounds="${SLUICE_BENCH_NOOP_ROUNDS:-3}" r
    for r in $(seq 1 "$rounds"); do
        if [ -n "$baseline" ] && [ $((r % 2)) = 0 ]; then
            noop_round "$r" baseline "$baseline" 8760
            noop_round "$r" this "$sluice" 8760
        else
            noop_round "$r" this "$sluice" 8760
            [ -z "$baseline" ] || noop_round "$r" baseline "$baseline" 8760
        fi
    done
    python3 - "$work" "$rounds" "$baseline_named" <<'PY'
import sys, statistics
work, rounds, baseline = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def figures(who):
    ms = [float(open(f"{work}/noop-{who}-8760-{r}.ms").read()) for r in range(1, rounds + 1)]
    kib = [int(open(f"{work}/noop-{who}-8760-{r}.rss").read()) for r in range(1, rounds + 1)]
    return ms, kib
ms, kib = figures("this")
print(f"noop: 8,760 hourly partitions: median {statistics.median(ms):.2f} ms per partition over "
      f"{len(ms)} rounds ({', '.join(f'{m:.2f}' for m in ms)}), peak RSS {max(kib) / 1024:.0f} MiB; "
      f"target <= 1.0 ms")
if baseline:
    bms, bkib = figures("baseline")
    print(f"noop baseline ({baseline}): median {statistics.median(bms):.2f} ms "
          f"({', '.join(f'{m:.2f}' for m in bms)}), peak RSS {max(bkib) / 1024:.0f} MiB; "
          f"this build / baseline: {statistics.median(ms) / statistics.median(bms):.3f}")
PY
}

# Scale in partitions: 8,760 hourly partitions (a year), then SLUICE_BENCH_NOOPSCALE_PARTITIONS
# (default 87,600, ten years of hours; 1000000 for the million of the scale figures), each on
# a fresh project; the cost per partition of the second as a ratio of the first's. The
# 8,760 take a few seconds, in which the machine's moods show: their figure is the median of
# three rounds, one before the long run and two after it.
noopscale() {
    local big="${SLUICE_BENCH_NOOPSCALE_PARTITIONS:-87600}"
    noop_round 1 this "$sluice" 8760
    noop_round 1 this "$sluice" "$big"
    noop_round 2 this "$sluice" 8760
    noop_round 3 this "$sluice" 8760
    python3 - "$work" "$big" <<'PY'
import sys, statistics
w, n = sys.argv[1], int(sys.argv[2])
smalls = [float(open(f"{w}/noop-this-8760-{r}.ms").read()) for r in (1, 2, 3)]
small, big = statistics.median(smalls), float(open(f"{w}/noop-this-{n}-1.ms").read())
rss = [max(int(open(f"{w}/noop-this-8760-{r}.rss").read()) for r in (1, 2, 3)) / 1024,
       int(open(f"{w}/noop-this-{n}-1.rss").read()) / 1024]
print(f"noopscale: 8,760 hourly partitions {small:.2f} ms per partition (median of "
      f"{', '.join(f'{m:.2f}' for m in smalls)}; peak RSS {rss[0]:.0f} MiB), "
      f"{n:,} {big:.2f} ms (peak RSS {rss[1]:.0f} MiB): ratio {big / small:.2f}; target <= 1.2")
PY
}

# usage: noop_round ROUND WHO BINARY PARTITIONS [SLUICE_TOML]    (hourly, from 2015-01-01T00)
noop_round() {
    local p="$work/noop-$2-$4-$1" bin="$3" n="$4"
    mkdir -p "$p"
    [ -z "${5:-}" ] || printf '%b\n' "$5" > "$p/sluice.toml"
    new_project "$p"
    cat > "$p/migrations/0001_create_noop.sql" <<'SQL'
CREATE TABLE noop (x BIGINT, hour TIMESTAMP NOT NULL) PARTITIONED BY (hour);
SQL
    cat > "$p/jobs/noop.toml" <<'TOML'
description = "No rows, no inputs: what is left is sluice's own work per partition"
version = 1
[partitioning]
granularity = "hourly"
[output]
table = "noop"
TOML
    echo 'SELECT CAST(1 AS BIGINT) AS x WHERE false' > "$p/jobs/noop.sql"
    "$bin" --project "$p" migrate -q > /dev/null
    local to t0 t1
    to=$(python3 -c "import datetime, sys; print((datetime.datetime(2015, 1, 1) + datetime.timedelta(hours=int(sys.argv[1]) - 1)).strftime('%Y-%m-%dT%H'))" "$n")
    t0=$(now)
    /usr/bin/time -f %M -o "$p.rss" \
        "$bin" --project "$p" backfill --from 2015-01-01T00 --to "$to" --concurrency "$concurrency" --output json -q > "$p.json"
    t1=$(now)
    python3 - "$p.json" "$t0" "$t1" "$concurrency" "$1 ($2)" "$p.ms" "$p.rss" "$n" <<'PY'
import json, sys, statistics
s = json.load(open(sys.argv[1])); t0, t1, c, r = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
n = int(sys.argv[8])
rss = int(open(sys.argv[7]).read().split()[-1])
open(sys.argv[7], "w").write(str(rss))
d = [i["duration_ms"] for i in s["items"] if i["outcome"] == "succeeded"]
assert len(d) == n, f"{len(d)} partitions succeeded, not {n}"
ms = 1000 * (t1 - t0) / len(d)
open(sys.argv[6], "w").write(str(ms))
print(f"noop round {r}: {len(d)} hourly partitions at concurrency {c}: {ms:.2f} ms per partition "
      f"(wall time / partitions, planning included), peak RSS {rss / 1024:.0f} MiB; each "
      f"partition's own latency: median {statistics.median(d):.1f} ms, p90 "
      f"{sorted(d)[int(len(d)*0.9)]:.1f} ms (includes waiting for a compute slot and for the "
      f"table's commit)")
PY
    rm -rf "$p"
}

# What measuring each run's cost costs (`[engine] measure_cost`, on by default): no-op
# partitions (the worst case: a run with nothing to compute) and the reference workload,
# each measured and not, interleaved, from one binary. For the reference, the CPU time the
# runs recorded is also set beside the CPU time the OS counted for the whole process.
cost() {
    local rounds="${SLUICE_BENCH_COST_ROUNDS:-3}" r off='[engine]\nmeasure_cost = false'
    for r in $(seq 1 "$rounds"); do
        if [ $((r % 2)) = 0 ]; then
            noop_round "$r" costoff "$sluice" 8760 "$off"
            noop_round "$r" coston "$sluice" 8760
        else
            noop_round "$r" coston "$sluice" 8760
            noop_round "$r" costoff "$sluice" 8760 "$off"
        fi
    done
    [ -n "$shared" ] || { echo "cost: ../shared/bench not found beside the repository" >&2; return 1; }
    local orders p
    orders="$(reference_data)"
    for r in $(seq 1 "$rounds"); do
        local order="on off"
        [ $((r % 2)) = 1 ] || order="off on"
        for who in $order; do
            p="$work/cost-ref-$who-$r"
            mkdir -p "$p"
            [ "$who" = on ] || printf '%b\n' "$off" > "$p/sluice.toml"
            reference_project "$p" "$orders"
            local t0 t1
            t0=$(now)
            /usr/bin/time -f '%M %U %S' -o "$p.usage" \
                "$sluice" --project "$p" backfill --from 2024-01-01 --to 2024-12-30 --concurrency "$concurrency" -q > /dev/null
            t1=$(now)
            python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$t1" > "$p.secs"
            "$sluice" --project "$p" status --output json > "$p.status.json"
            rm -rf "$p"
        done
    done
    python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def noop(who):
    ms = [float(open(f"{work}/noop-{who}-8760-{r}.ms").read()) for r in range(1, rounds + 1)]
    kib = [int(open(f"{work}/noop-{who}-8760-{r}.rss").read()) for r in range(1, rounds + 1)]
    return statistics.median(ms), max(kib) / 1024
on, on_rss = noop("coston")
off, off_rss = noop("costoff")
print(f"cost: no-op partitions (8,760 hourly): {on:.3f} ms each measured (peak RSS {on_rss:.0f} MiB), "
      f"{off:.3f} ms not (peak RSS {off_rss:.0f} MiB): ratio {on / off:.3f}, "
      f"{on - off:+.3f} ms a partition ({100 * (on - off) / on:+.1f}% of a no-op run)")
def ref(who):
    out = []
    for r in range(1, rounds + 1):
        p = f"{work}/cost-ref-{who}-{r}"
        rss, user, system = open(f"{p}.usage").read().split()[-3:]
        status = json.load(open(f"{p}.status.json"))
        recorded = sum((s.get("cost") or {}).get("cpu_us", 0) for s in status) / 1e6
        out.append((float(open(f"{p}.secs").read()), int(rss) / 1024, float(user) + float(system), recorded))
    return out
on, off = ref("on"), ref("off")
med = lambda rows, i: statistics.median(r[i] for r in rows)
print(f"cost: reference workload (365 days x 20,000 rows, two jobs): {med(on, 0):.2f} s measured "
      f"(peak RSS {max(r[1] for r in on):.0f} MiB), {med(off, 0):.2f} s not "
      f"(peak RSS {max(r[1] for r in off):.0f} MiB): ratio {med(on, 0) / med(off, 0):.3f}; "
      f"the runs recorded {med(on, 3):.1f} s of CPU, the OS counted {med(on, 2):.1f} s for the "
      f"whole process ({100 * med(on, 3) / med(on, 2):.0f}%)")
PY
}

# The reference data (365 days x 20,000 rows), generated once; prints its folder.
reference_data() {
    local orders="$data/orders-365x20000"
    if [ ! -f "$orders/dt=2024-12-30/orders.csv" ]; then
        echo "generating the reference data (365 days x 20,000 rows) into $orders ..." >&2
        python3 "$shared/gen_orders.py" "$orders" 2024-01-01 365 20000 >&2
    fi
    echo "$orders"
}

reference() {
    [ -n "$shared" ] || { echo "reference: ../shared/bench not found beside the repository" >&2; return 1; }
    local orders
    orders="$(reference_data)"
    local rounds="${SLUICE_BENCH_REFERENCE_ROUNDS:-3}" r
    for r in $(seq 1 "$rounds"); do reference_round "$r" "$orders"; done
    python3 - "$work"/reference-*.ratio <<'PY'
import sys, statistics
x = [float(open(f).read()) for f in sys.argv[1:]]
print(f"reference: median ratio {statistics.median(x):.2f}x over {len(x)} rounds "
      f"({', '.join(f'{v:.2f}' for v in x)}); target <= 1.00x")
PY
}

# usage: clean_orders_job PROJECT ORDERS_DIR [MORE_TOML]
# The reference's clean_orders job and its table, in PROJECT: the same SQL as DuckDB's
# single pass (shared/bench/duckdb_floor.py); MORE_TOML is added to its spec.
clean_orders_job() {
    local p="$1" orders="$2" more="${3:-}"
    new_project "$p"
    cat > "$p/migrations/0001_clean_orders.sql" <<'SQL'
CREATE TABLE clean_orders (
    order_id BIGINT, order_ts TIMESTAMP, customer_id BIGINT, region STRING, category STRING,
    quantity INT, unit_price DOUBLE, amount DOUBLE, status STRING, dt DATE NOT NULL
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
$more
TOML
    cat > "$p/jobs/clean_orders.sql" <<'SQL'
SELECT order_id, order_ts, customer_id, region, category, quantity, unit_price,
       quantity * unit_price AS amount, status
FROM orders WHERE status <> 'cancelled'
SQL
}

# usage: reference_project PROJECT ORDERS_DIR
# The reference workload's two jobs and their tables, in PROJECT, migrated.
reference_project() {
    local p="$1" orders="$2"
    clean_orders_job "$p" "$orders"
    cat > "$p/migrations/0002_daily_revenue.sql" <<'SQL'
CREATE TABLE daily_revenue (
    dt DATE NOT NULL, region STRING, category STRING, revenue DOUBLE, orders BIGINT, customers BIGINT
) PARTITIONED BY (dt);
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
}

# usage: reference_backfill PROJECT: the year's backfill, timed; writes PROJECT.secs and
# PROJECT.rss (peak RSS of the sluice process, KiB), then checks the result against the
# reference figures with an independent reader.
reference_backfill() {
    local p="$1" t0 t1
    t0=$(now)
    /usr/bin/time -f %M -o "$p.rss" \
        "$sluice" --project "$p" backfill --from 2024-01-01 --to 2024-12-30 --concurrency "$concurrency" -q > "$p.txt"
    t1=$(now)
    python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$t1" > "$p.secs"
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
}

# One round: sluice's backfill on a fresh project, then DuckDB's single pass, back to back.
reference_round() {
    local p="$work/reference-$1" orders="$2"
    reference_project "$p" "$orders"
    reference_backfill "$p"
    local floor
    floor=$(/usr/bin/time -f %M -o "$p-duckdb.rss" python3 "$shared/duckdb_floor.py" "$orders" "$p-duckdb-out" | tee -a /dev/stderr | sed -n 's/.*total=\([0-9.]*\)s.*/\1/p')
    python3 - "$(cat "$p.secs")" "$floor" "$concurrency" "$1" "$p.ratio" "$p.rss" "$p-duckdb.rss" <<'PY'
import sys
s, floor, c, r = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
rss, duck_rss = (int(open(f).read().split()[-1]) / 1024 for f in sys.argv[6:8])
open(sys.argv[5], "w").write(str(s / floor))
print(f"reference round {r}: sluice backfill {s:.2f} s, peak RSS {rss:.0f} MiB (concurrency {c}); "
      f"DuckDB single pass {floor:.2f} s, peak RSS {duck_rss:.0f} MiB (python3 included); "
      f"ratio {s/floor:.2f}x")
PY
    rm -rf "$p" "$p-duckdb-out"
}

# The reference workload on a local Ballista cluster (`sluice ballista scheduler` and two
# executors of one task slot each, on loopback), beside the same backfill on the embedded
# engine, back to back, as a ratio: the median of three rounds. Every partition of both
# jobs is a Ballista job: this measures what the cluster costs per partition on one
# machine, which is what it costs before a partition is big enough to need it.
cluster() {
    [ -n "$shared" ] || { echo "cluster: ../shared/bench not found beside the repository" >&2; return 1; }
    local orders
    orders="$(reference_data)"
    local rounds="${SLUICE_BENCH_CLUSTER_ROUNDS:-3}" r
    for r in $(seq 1 "$rounds"); do cluster_round "$r" "$orders"; done
    python3 - "$work"/cluster-*.ratio <<'PY'
import sys, statistics
x = [float(open(f).read()) for f in sys.argv[1:]]
print(f"cluster: reference workload on a local two-executor Ballista cluster, median "
      f"{statistics.median(x):.2f}x the embedded engine over {len(x)} rounds "
      f"({', '.join(f'{v:.2f}' for v in x)})")
PY
}

# usage: cluster_round ROUND ORDERS_DIR
cluster_round() {
    local e="$work/cluster-$1-embedded" c="$work/cluster-$1-ballista" orders="$2"
    reference_project "$e" "$orders"
    reference_backfill "$e"
    local sp ports=() pids=() i
    sp=$(free_port)
    "$sluice" ballista scheduler --bind "127.0.0.1:$sp" -q 2> "$c-scheduler.log" &
    pids+=($!)
    for i in 1 2; do
        "$sluice" ballista executor --scheduler "127.0.0.1:$sp" --port "$(free_port)" \
            --grpc-port "$(free_port)" --concurrent-tasks 1 -q 2> "$c-executor-$i.log" &
        pids+=($!)
    done
    sleep 3
    reference_project "$c" "$orders"
    printf '[engine]\nkind = "ballista"\nscheduler = "df://127.0.0.1:%s"\n' "$sp" > "$c/sluice.toml"
    reference_backfill "$c"
    local rss=() pid
    for pid in "${pids[@]}"; do rss+=("$(peak_kib "$pid")"); done
    kill -TERM "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
    python3 - "$(cat "$e.secs")" "$(cat "$c.secs")" "$1" "$c.ratio" "$e.rss" "$c.rss" "${rss[@]}" <<'PY'
import sys
e, c, r = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
erss, crss = (int(open(f).read().split()[-1]) / 1024 for f in sys.argv[5:7])
sched, ex1, ex2 = (int(k) / 1024 for k in sys.argv[7:10])
open(sys.argv[4], "w").write(str(c / e))
print(f"cluster round {r}: embedded {e:.2f} s, peak RSS {erss:.0f} MiB; Ballista {c:.2f} s, peak RSS "
      f"sluice {crss:.0f} MiB, scheduler {sched:.0f} MiB, executors {ex1:.0f} and {ex2:.0f} MiB; "
      f"ratio {c / e:.2f}x")
PY
    rm -rf "$e" "$c"
}

# CPU used by an idle daemon: 50 scheduled jobs, none due during the measurement (their
# start is tomorrow), over $SLUICE_BENCH_IDLE_SECONDS (default 60) seconds, from
# /proc/PID/stat. Next to it, the same figure for `sleep`, the floor of any process.
idle() {
    local p="$work/idle" seconds="${SLUICE_BENCH_IDLE_SECONDS:-60}"
    new_project "$p"
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
    new_project "$p"
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

# One big day (issue: a partition of any size in bounded memory). A clean_orders-like job
# with a `unique` check on order_id, `[engine] memory_limit_mb = 256`, one partition of
# 15M rows, then 45M (SLUICE_BENCH_BIGPART_SIZES), each beside DuckDB's COPY of the same day
# with memory_limit '256MB' and 2 threads (shared/bench/duckdb_bigpart.py), in turn. Prints
# both wall times, both peak RSS (whole process, from the OS) and the ratio; the figure per
# size is the median ratio and the highest peak over SLUICE_BENCH_BIGPART_ROUNDS rounds.
bigpart() {
    [ -n "$shared" ] || { echo "bigpart: ../shared/bench not found beside the repository" >&2; return 1; }
    local sizes="${SLUICE_BENCH_BIGPART_SIZES:-15000000 45000000}" rows
    # The peer is DuckDB 1.5: DuckDB 2.0 runs out of memory in this COPY under a 256 MB
    # limit (PARTITION_BY keeps its writers' buffers; measured with 2.0.1, with and without
    # preserve_insertion_order), so it has no time to compare with. Kept in its own venv.
    duckdb1="$data/venv-duckdb1/bin/python"
    if ! "$duckdb1" -c 'import duckdb' 2>/dev/null; then
        python3 -m venv "$data/venv-duckdb1"
        "$data/venv-duckdb1/bin/pip" install --quiet --disable-pip-version-check duckdb==1.5.6
    fi
    echo "bigpart peer: DuckDB $("$duckdb1" -c 'import duckdb; print(duckdb.__version__)')"
    for rows in $sizes; do
        local orders="$data/bigpart-$rows"
        if [ ! -f "$orders/dt=2024-03-01/orders.csv" ]; then
            echo "generating one day of $rows rows into $orders ..." >&2
            python3 "$shared/gen_orders.py" "$orders" 2024-03-01 1 "$rows"
        fi
        local rounds="${SLUICE_BENCH_BIGPART_ROUNDS:-3}" r
        for r in $(seq 1 "$rounds"); do bigpart_round "$r" "$orders" "$rows"; done
        python3 - "$rows" "$work"/bigpart-"$rows"-*.result <<'PY'
import sys, statistics
rows = int(sys.argv[1])
res = [open(f).read().split() for f in sys.argv[2:]]
ratio = [float(x[0]) for x in res]
rss = max(float(x[1]) for x in res)
duck = max(float(x[2]) for x in res)
print(f"bigpart {rows:,} rows: median ratio {statistics.median(ratio):.2f}x DuckDB over {len(ratio)} "
      f"rounds ({', '.join(f'{v:.2f}' for v in ratio)}), sluice peak RSS {rss:.0f} MiB "
      f"(DuckDB {duck:.0f} MiB); targets: ratio <= 1.1x, peak <= 384 MiB")
PY
    done
}

# usage: bigpart_round ROUND ORDERS_DIR ROWS
bigpart_round() {
    local p="$work/bigpart-$3-$1" orders="$2"
    new_project "$p"
    cat > "$p/sluice.toml" <<'TOML'
[engine]
memory_limit_mb = 256
target_partitions = 2
TOML
    clean_orders_job "$p" "$orders" '[[checks]]
type = "unique"
columns = ["order_id"]'
    "$sluice" --project "$p" migrate -q > /dev/null
    /usr/bin/time -f '%e %M' -o "$p.time" \
        "$sluice" --project "$p" backfill --from 2024-03-01 --to 2024-03-01 -q > "$p.txt"
    # The table read back by an independent reader: every row not cancelled, once.
    python3 - "$p/warehouse" "$orders" <<'PY'
import sys, duckdb
from deltalake import DeltaTable
w, orders = sys.argv[1], sys.argv[2]
want = duckdb.sql(f"select count(*) from read_csv('{orders}/*/*.csv') where status <> 'cancelled'").fetchall()[0][0]
t = DeltaTable(f"{w}/clean_orders/v1")
ds = t.to_pyarrow_dataset()
got, distinct = duckdb.sql("select count(*), count(distinct order_id) from ds").fetchall()[0]
ok = got == want == distinct
print(f"bigpart result: {got} rows, {distinct} distinct order ids, {want} expected: "
      f"{'as expected' if ok else 'NOT as expected'}", flush=True)
import os; os._exit(0 if ok else 1)
PY
    # The statements of shared/bench/duckdb_bigpart.py (the COPY, then the duplicate
    # count; fetchall, which both DuckDB 1 and 2 offer).
    /usr/bin/time -f '%e %M' -o "$p-duckdb.time" "$duckdb1" - "$orders" "$p-duckdb-out" 256 <<'PY'
import sys, duckdb, shutil, os
src, out, mb = sys.argv[1], sys.argv[2], sys.argv[3]
shutil.rmtree(out, ignore_errors=True); os.makedirs(out)
con = duckdb.connect(); con.execute("SET threads=2"); con.execute(f"SET memory_limit='{mb}MB'")
con.execute(f"""COPY (SELECT order_id, order_ts, customer_id, region, category, quantity, unit_price,
  quantity*unit_price AS amount, status, dt FROM read_csv('{src}/*/*.csv', hive_partitioning=true)
  WHERE status <> 'cancelled') TO '{out}/clean_orders' (FORMAT parquet, PARTITION_BY (dt), COMPRESSION zstd)""")
n = con.execute(f"select count(*) - count(distinct order_id) from read_parquet('{out}/clean_orders/*/*.parquet')").fetchall()[0][0]
assert n == 0, n
PY
    python3 - "$p.time" "$p-duckdb.time" "$1" "$3" "$p.result" <<'PY'
import sys
def last(f):
    s, kib = open(f).read().split()[-2:]
    return float(s), int(kib) / 1024
(s, rss), (d, drss) = last(sys.argv[1]), last(sys.argv[2])
open(sys.argv[5], "w").write(f"{s / d} {rss} {drss}")
print(f"bigpart {int(sys.argv[4]):,} rows, round {sys.argv[3]}: sluice {s:.2f} s, peak RSS {rss:.0f} MiB; "
      f"DuckDB COPY {d:.2f} s, peak RSS {drss:.0f} MiB (python3 included); ratio {s / d:.2f}x")
PY
    rm -rf "$p" "$p-duckdb-out"
}

# A poll that looks at 10,000 complete partitions' input files: hourly partitions of two
# keys (5,000 hours each, within the longest `watch_inputs`, 366 days) of a job reading one
# small CSV each, all complete; a daemon replayed over ten minutes without a tick (so its
# polls do nothing but look), with `watch_inputs` covering every partition, beside the same
# replay without it: the difference is the watch's cost. Then the sample month's runs: what
# recording their reads costs the catalog, per run.
watch() {
    local p="$work/watch" hours=5000
    new_project "$p"; mkdir -p "$p/in/a" "$p/in/b"
    python3 - "$p/in" "$hours" <<'PY'
import datetime, sys
d, n = sys.argv[1], int(sys.argv[2])
t = datetime.datetime(2015, 1, 1)
for k in ("a", "b"):
    for i in range(n):
        open(f"{d}/{k}/{(t + datetime.timedelta(hours=i)).strftime('%Y-%m-%dT%H')}.csv", "w").write("n\n1\n")
PY
    echo 'CREATE TABLE watched (total BIGINT, hour TIMESTAMP NOT NULL, k STRING NOT NULL) PARTITIONED BY (hour, k);' > "$p/migrations/0001_watched.sql"
    cat > "$p/jobs/watched.toml" <<'TOML'
description = "one small file an hour, for each of two keys"
version = 1
start = "2015-01-01T00"
[schedule]
cron = "0 * * * *"
max_catch_up = 1
[partitioning]
granularity = "hourly"
key_column = "k"
keys = ["a", "b"]
[[inputs]]
name = "files"
path = "in/{key}/{partition}.csv"
format = "csv"
schema = ["n BIGINT NOT NULL"]
[output]
table = "watched"
TOML
    echo 'SELECT SUM(n) AS total FROM files' > "$p/jobs/watched.sql"
    "$sluice" --project "$p" migrate -q > /dev/null
    local last
    last=$(python3 -c "import datetime; print((datetime.datetime(2015, 1, 1) + datetime.timedelta(hours=$hours - 1)).strftime('%Y-%m-%dT%H'))")
    "$sluice" --project "$p" backfill --from 2015-01-01T00 --to "$last" --concurrency "$concurrency" -q > /dev/null
    # Ten minutes after the tick that ran the last hour: no tick inside.
    local from to
    from=$(python3 -c "import datetime; print((datetime.datetime(2015, 1, 1) + datetime.timedelta(hours=$hours, minutes=10)).strftime('%Y-%m-%dT%H:%M:%SZ'))")
    to=$(python3 -c "import datetime; print((datetime.datetime(2015, 1, 1) + datetime.timedelta(hours=$hours, minutes=20)).strftime('%Y-%m-%dT%H:%M:%SZ'))")
    local r
    for r in 1 2 3; do
        for mode in without with; do
            if [ "$mode" = with ]; then
                sed -i 's/^max_catch_up = 1$/max_catch_up = 1\nwatch_inputs = "366d"/' "$p/jobs/watched.toml"
            else
                sed -i '/^watch_inputs/d' "$p/jobs/watched.toml"
            fi
            local t0 t1
            t0=$(now)
            /usr/bin/time -f %M -o "$work/watch-$mode-$r.rss" \
                "$sluice" --project "$p" daemon --replay "$from..$to" --metrics-address off -q > "$work/watch-$mode-$r.out"
            t1=$(now)
            python3 -c "print(1000 * ($t1 - $t0))" > "$work/watch-$mode-$r.ms"
            grep -q "^0 succeeded, 0 failed, 0 not run" "$work/watch-$mode-$r.out" ||
                { echo "watch: the replay ran something:" >&2; cat "$work/watch-$mode-$r.out" >&2; return 1; }
        done
    done
    # A rewritten file is found and its partition rerun once; a file no partition names is
    # not a change.
    echo "n" > "$p/in/a/2015-01-02T00.csv"; echo "2" >> "$p/in/a/2015-01-02T00.csv"
    echo "n" > "$p/in/b/extra.csv"
    "$sluice" --project "$p" daemon --replay "$from..$to" --metrics-address off -q > "$work/watch-changed.out" || true
    grep -q "^1 succeeded, 0 failed, 0 not run" "$work/watch-changed.out" ||
        { echo "watch: a changed file was not rerun once:" >&2; cat "$work/watch-changed.out" >&2; return 1; }
    python3 - "$work" "$((2 * hours))" <<'PY'
import sys, statistics
w, n = sys.argv[1], int(sys.argv[2])
def med(mode, ext):
    v = [float(open(f"{w}/watch-{mode}-{r}.{ext}").read().split()[-1]) for r in (1, 2, 3)]
    return statistics.median(v), max(v)
(a, _), (b, _) = med("with", "ms"), med("without", "ms")
(_, ra), (_, rb) = med("with", "rss"), med("without", "rss")
print(f"watch: a replay whose poll checks {n:,} complete partitions' input files: {a:.0f} ms "
      f"(peak RSS {ra / 1024:.0f} MiB), the same replay without watch_inputs {b:.0f} ms "
      f"(peak RSS {rb / 1024:.0f} MiB): the check costs {a - b:.0f} ms; target <= 1000 ms; "
      f"a rewritten file among them is found and its partition rerun once")
PY
    # What runs' reads cost the catalog: the sample month, per job.
    local s="$work/watch-sample"
    mkdir -p "$s"
    cp -r "$repo/jobs" "$repo/migrations" "$repo/sample-data" "$repo/sluice.toml" "$s/"
    "$sluice" --project "$s" migrate -q > /dev/null
    "$sluice" --project "$s" backfill --from 2024-01-01 --to 2024-01-31 -q > /dev/null 2>&1
    python3 - "$s/.sluice/catalog.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT job, COUNT(*), AVG(LENGTH(reads_json) + LENGTH(data_version)) FROM runs GROUP BY job ORDER BY job").fetchall()
print("catalog growth for what a run read (reads_json + data_version), bytes per run: " +
      ", ".join(f"{j} {b:.0f} ({n} runs)" for j, n, b in rows))
PY
    rm -rf "$p" "$s"
}

# The grid's server time (Server-Timing: the page built and rendered, not the network).
grid() {
    local p="$work/grid" port
    new_project "$p"
    local start from to
    start=$(date -u -d "-10000 hours" +%Y-%m-%dT%H)
    from=$(date -u -d "-1000 hours" +%Y-%m-%dT%H)
    to=$(date -u -d "-2 hours" +%Y-%m-%dT%H)
    echo "# the grid benchmark" > "$p/sluice.toml"
    printf 'version = 1\nstart = "%s"\n\n[partitioning]\ngranularity = "hourly"\ntime_zone = "UTC"\n\n[output]\ntable = "hours"\n' "$start" > "$p/jobs/hours.toml"
    echo "SELECT CAST(1 AS BIGINT) AS x WHERE false" > "$p/jobs/hours.sql"
    echo "CREATE TABLE hours (x BIGINT, hour TIMESTAMP NOT NULL) PARTITIONED BY (hour);" > "$p/migrations/0001_create_hours.sql"
    "$sluice" --project "$p" migrate -q > /dev/null
    "$sluice" --project "$p" backfill --from "$from" --to "$to" -q > /dev/null
    port=$(free_port)
    "$sluice" --project "$p" ui --address "127.0.0.1:$port" > "$work/grid-ui.log" 2>&1 &
    local ui=$!
    for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.1; done
    best() {
        local b=999999 t
        for _ in 1 2 3 4 5; do
            t=$(curl -s -D - -o /dev/null "http://127.0.0.1:$port/$1" | tr -d '\r' | sed -n 's/^server-timing: render;dur=//ip')
            b=$(python3 -c "print(min($b, ${t:-999999}))")
        done
        echo "$b"
    }
    local all done_only
    all=$(best "?job=hours&from=$start&to=$to")
    done_only=$(best "?job=hours&from=$from&to=$to")
    local rss
    rss=$(peak_kib "$ui")
    kill "$ui"; wait "$ui" 2>/dev/null || true
    echo "grid: 10,000 hourly partitions on one page: ${all} ms server time, best of 5 (target <= 100 ms); the 1,000 complete ones alone: ${done_only} ms; ui peak RSS $((rss / 1024)) MiB"
    rm -rf "$p"
}

case "$what" in
    noop) noop ;;
    noopscale) noopscale ;;
    cost) cost ;;
    reference) reference ;;
    idle) idle ;;
    promote) promote ;;
    bigpart) bigpart ;;
    cluster) cluster ;;
    watch) watch ;;
    grid) grid ;;
    scale) bash "$here/scale.sh" "${SLUICE_BENCH_SCALE_BACKEND:-sqlite}" ;;
    merge) SLUICE_BENCH_BIN="$sluice" bash "$here/merge.sh" ;;
    command) SLUICE_BENCH_BIN="$sluice" bash "$here/command.sh" ;;
    postgres) SLUICE_BENCH_BIN="$sluice" bash "$here/postgres.sh" ;;
    env) SLUICE_BENCH_BIN="$sluice" bash "$here/env.sh" ;;
    all) noop; noopscale; cost; reference; idle; promote; bigpart; cluster; watch; grid; bash "$here/scale.sh" sqlite
         SLUICE_BENCH_BIN="$sluice" bash "$here/merge.sh"; SLUICE_BENCH_BIN="$sluice" bash "$here/command.sh"
         SLUICE_BENCH_BIN="$sluice" bash "$here/env.sh" ;;
    *) echo "usage: bench/run.sh [noop|noopscale|cost|reference|idle|promote|bigpart|cluster|watch|grid|scale|merge|command|postgres|env|all]" >&2; exit 2 ;;
esac
