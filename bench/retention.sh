#!/usr/bin/env bash
# The retention benchmark: a year of a daemon's history under `[catalog] retention = "30d"`,
# beside the same year without retention (the peer, same sitting). 50 hourly jobs (each
# writes three rows an hour, with not_null, unique and volume checks, so each run carries a
# profile and check results), every fifth reading the one before it; a daemon replays the
# year a month at a time (`daemon --replay`, one process per month, the catalog carried
# over), and after each month every partition of it is run again (`backfill --force`: the
# reruns that late data and fixes bring, each superseding a run). After each month: the
# catalog file's size, its live pages, the runs it holds, and
# the bytes per run; with retention, the longest a prune batch held the write lock, from
# the daemon's `run history pruned` lines. Then `status`, `backfill --dry-run` of the year
# and the grid's first page are compared between the two catalogs: nothing they show may
# differ. Every replay is printed with its time and peak RSS.
#
# usage: bench/retention.sh    SLUICE_BENCH_RETENTION_JOBS (default 50) and
# SLUICE_BENCH_RETENTION_MONTHS (default 12) size it; SLUICE_BENCH_BIN=/path/to/sluice
# measures that binary instead of building this checkout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
jobs="${SLUICE_BENCH_RETENTION_JOBS:-50}"
months="${SLUICE_BENCH_RETENTION_MONTHS:-12}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# usage: project DIR RETENTION_TOML_LINE
project() {
    local p="$1" i name up
    mkdir -p "$p/jobs" "$p/migrations"
    printf '[catalog]\n%s\n' "$2" > "$p/sluice.toml"
    for i in $(seq 0 $((jobs - 1))); do
        name=$(printf 'h%03d' "$i")
        printf 'CREATE TABLE %s (hour TIMESTAMP NOT NULL, n BIGINT NOT NULL, v DOUBLE) PARTITIONED BY (hour);\n' "$name" \
            > "$p/migrations/$(printf '%04d' $((i + 1)))_create_$name.sql"
        if [ $((i % 5)) = 4 ]; then
            up=$(printf 'h%03d' $((i - 1)))
            printf '[[inputs]]\nname = "up"\ntable = "%s"\n' "$up" > "$p/input-$name"
            echo 'SELECT n, v * 2 AS v FROM up' > "$p/jobs/$name.sql"
        else
            : > "$p/input-$name"
            echo 'SELECT n, CAST(n AS DOUBLE) * 1.5 AS v FROM (VALUES (1), (2), (3)) AS t(n)' > "$p/jobs/$name.sql"
        fi
        {
            printf 'version = 1\nstart = "2024-01-01T00"\n\n[schedule]\ncron = "5 * * * *"\n\n'
            printf '[partitioning]\ngranularity = "hourly"\n\n'
            cat "$p/input-$name"
            printf '\n[output]\ntable = "%s"\nkey = ["n"]\n\n' "$name"
            printf '[[checks]]\ntype = "not_null"\ncolumns = ["n"]\n\n[[checks]]\ntype = "unique"\n\n'
            printf '[[checks]]\ntype = "volume"\nbaseline = 7\ntolerance = 0.5\n'
        } > "$p/jobs/$name.toml"
        rm "$p/input-$name"
    done
    "$sluice" --project "$p" migrate -q > /dev/null
}

# usage: measure DIR LABEL MONTH: one line of the catalog's size after a month.
measure() {
    python3 - "$1/.sluice/catalog.db" "$2" "$3" "$1/month-$3.log" "$1/month-$3.usage" "$1/month-$3.secs" <<'PY'
import os, re, sqlite3, sys
db, label, month, log, usage, secs = sys.argv[1:7]
size = os.path.getsize(db) + (os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0)
c = sqlite3.connect(db)
page = c.execute("PRAGMA page_size").fetchone()[0]
live = (c.execute("PRAGMA page_count").fetchone()[0] - c.execute("PRAGMA freelist_count").fetchone()[0]) * page
runs = c.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
parts = c.execute("SELECT COUNT(*) FROM partitions").fetchone()[0]
locks = [float(m) for m in re.findall(r"longest_lock_ms=([0-9.]+)", open(log).read())]
rss_kib = int(open(usage).read().split()[0])
t = float(open(secs).read())
lock = f", longest prune lock {max(locks):.1f} ms over {len(locks)} prune(s)" if locks else ""
print(f"retention {label} month {month}: replay {t:.0f} s (peak RSS {rss_kib / 1024:.0f} MiB); "
      f"file {size / 2**20:.1f} MiB, live {live / 2**20:.1f} MiB; {runs:,} runs, {parts:,} partitions; "
      f"{live / max(runs, 1):.0f} bytes per run{lock}", flush=True)
open(f"{os.path.dirname(db)}/../month-{month}.size", "w").write(str(live))
PY
}

# usage: year DIR LABEL
year() {
    local p="$1" m from to last t0 t1
    for m in $(seq 1 "$months"); do
        from=$(python3 -c "import sys; m=int(sys.argv[1]); print(f'{2024 + (m - 1) // 12}-{(m - 1) % 12 + 1:02d}-01')" "$m")
        to=$(python3 -c "import sys; m=int(sys.argv[1]) + 1; print(f'{2024 + (m - 1) // 12}-{(m - 1) % 12 + 1:02d}-01')" "$m")
        t0=$(date +%s.%N)
        /usr/bin/time -f '%M' -o "$p/month-$m.usage" \
            "$sluice" --project "$p" daemon --replay "$from..$to" --metrics-address off > /dev/null 2> "$p/month-$m.log" ||
            { echo "retention: the replay of $from..$to failed:" >&2; tail -20 "$p/month-$m.log" >&2; return 1; }
        t1=$(date +%s.%N)
        python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$t1" > "$p/month-$m.secs"
        last=$(python3 -c "import datetime, sys; print((datetime.date.fromisoformat(sys.argv[1]) - datetime.timedelta(days=1)).isoformat())" "$to")
        "$sluice" --project "$p" backfill --from "$from" --to "$last" --force --concurrency 2 -q > /dev/null
        measure "$p" "$2" "$m"
        # The log is only read for the prunes' lock times.
        grep -h "run history pruned" "$p/month-$m.log" > "$p/month-$m.pruned" || true
        rm "$p/month-$m.log"
    done
}

with="$work/with" without="$work/without"
project "$with" 'retention = "30d"'
project "$without" '# no retention'
year "$with" "30d"
year "$without" "none"

python3 - "$with" "$without" "$months" <<'PY'
import sys
w, wo, months = sys.argv[1], sys.argv[2], int(sys.argv[3])
sw = [int(open(f"{w}/month-{m}.size").read()) for m in range(1, months + 1)]
swo = [int(open(f"{wo}/month-{m}.size").read()) for m in range(1, months + 1)]
if months >= 3:
    later = sw[1:]
    spread = (max(later) - min(later)) / min(later)
    print(f"retention: from month 2 on, the catalog with retention stays within {100 * spread:.1f}% "
          f"({min(later) / 2**20:.1f} .. {max(later) / 2**20:.1f} MiB live; target <= 10%); "
          f"without retention it grows to {swo[-1] / 2**20:.1f} MiB: {swo[-1] / sw[-1]:.2f}x")
PY

# What the status, the planner and the grid show is the same with and without retention.
for p in "$with" "$without"; do
    "$sluice" --project "$p" status --output json | python3 -c '
import json, sys
rows = json.load(sys.stdin)
for r in rows:
    print(r["job"], r["partition"], r["state"], r["rows"], r["stale_because"], r.get("error"))' > "$p.status"
    "$sluice" --project "$p" backfill --from 2024-01-01T00 --to 2024-12-31T23 --dry-run --output json > "$p.plan"
done
if cmp -s "$with.status" "$without.status" && cmp -s "$with.plan" "$without.plan"; then
    echo "retention: status ($(wc -l < "$with.status") partitions) and the year's backfill plan are the same with and without retention"
else
    echo "retention: status or plan DIFFER with retention" >&2
    diff "$with.status" "$without.status" | head -5 >&2 || true
    exit 1
fi
