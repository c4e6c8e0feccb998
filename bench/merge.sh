#!/usr/bin/env bash
# The merge benchmark: a day's export of 1M changed rows (half updates of rows the table
# holds, half inserts, over the last 10 of its days) merged by `write = "merge"` into a
# table of 30M rows in 365 daily partitions (`PARTITIONED BY (dt)`, key (dt, id),
# `sequence_by = "updated_at"`), under `[engine] memory_limit_mb` (default 256), beside,
# in the same sitting, rounds interleaved:
#   replace: the same 1M rows written by a replace job as one day (target: merge <= 2x);
#   peer: Python's deltalake `merge` of the same changes into a copy of the same table,
#      with the touched partitions named in its predicate by hand (target: sluice at least
#      as fast);
# each with its peak RSS (target for the merge: <= memory_limit_mb + 128 MiB) and the
# files it scanned: sluice's are the files its commit removes (it rewrites exactly the
# partitions it reads), the peer's its own metrics' `num_target_files_scanned`. After each
# round both tables are compared (row count and a hash of every row, DuckDB over Python's
# deltalake): the figure counts only if they agree.
#
# usage: bench/merge.sh   (bench/run.sh merge)
# SLUICE_BENCH_MERGE_ROWS (30000000), _DAYS (365), _CHANGES (1000000), _TOUCHED (10),
# _MEMORY_MB (256), _ROUNDS (3) size it. The table is generated once into
# $SLUICE_BENCH_DATA (default ~/.cache/sluice-bench) and copied for each round.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
data="${SLUICE_BENCH_DATA:-$HOME/.cache/sluice-bench}"
rows="${SLUICE_BENCH_MERGE_ROWS:-30000000}"
days="${SLUICE_BENCH_MERGE_DAYS:-365}"
changes="${SLUICE_BENCH_MERGE_CHANGES:-1000000}"
touched="${SLUICE_BENCH_MERGE_TOUCHED:-10}"
memory_mb="${SLUICE_BENCH_MERGE_MEMORY_MB:-256}"
rounds="${SLUICE_BENCH_MERGE_ROUNDS:-3}"
mkdir -p "$data"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$sluice" "$work/sluice-measured"; sluice="$work/sluice-measured"
export_day=2025-01-01

# The project: the merge job, the replace job over the same export, their tables. The
# export is Parquet, read as it is by both jobs.
project() {
    local p="$1" export_dir="$2"
    mkdir -p "$p/jobs" "$p/migrations"
    printf '[engine]\nmemory_limit_mb = %s\n' "$memory_mb" > "$p/sluice.toml"
    cat > "$p/migrations/0001_events.sql" <<'SQL'
CREATE TABLE events (dt DATE NOT NULL, id BIGINT NOT NULL, name STRING, amount DOUBLE, updated_at TIMESTAMP NOT NULL) PARTITIONED BY (dt);
CREATE TABLE events_day (id BIGINT NOT NULL, name STRING, amount DOUBLE, updated_at TIMESTAMP NOT NULL, changed_dt DATE NOT NULL, dt DATE NOT NULL) PARTITIONED BY (dt);
SQL
    for job in events events_day; do
        local output
        if [ "$job" = events ]; then
            output='write = "merge"
key = ["dt", "id"]
sequence_by = "updated_at"'
        else
            output=''
        fi
        cat > "$p/jobs/$job.toml" <<TOML
version = 1
start = "$export_day"
[partitioning]
granularity = "daily"
[[inputs]]
name = "changes"
path = "$export_dir/{partition}/changes.parquet"
format = "parquet"
[output]
table = "$job"
$output
TOML
    done
    echo 'SELECT dt, id, name, amount, updated_at FROM changes' > "$p/jobs/events.sql"
    echo 'SELECT id, name, amount, updated_at, dt AS changed_dt FROM changes' > "$p/jobs/events_day.sql"
}

# The table (written by Python's deltalake into the migrated table, as another writer's
# history would be) and the export, made once per size.
template="$data/merge-$rows-$days-$changes-$touched"
if [ ! -f "$template/ready" ]; then
    rm -rf "$template"
    echo "generating $rows rows in $days days and $changes changes into $template ..." >&2
    project "$template/project" "$template/export"
    "$sluice" --project "$template/project" migrate -q > /dev/null
    python3 - "$template" "$rows" "$days" "$changes" "$touched" "$export_day" <<'PY'
import sys, os, datetime
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake
t, rows, days, changes, touched, export_day = sys.argv[1], *map(int, sys.argv[2:6]), sys.argv[6]
table = f"{t}/project/warehouse/events/v1"
first = datetime.date(2024, 1, 1)
per_day = rows // days
schema = pa.schema([("dt", pa.date32(), False), ("id", pa.int64(), False), ("name", pa.string()),
                    ("amount", pa.float64()), ("updated_at", pa.timestamp("us", tz="UTC"), False)])
def day_rows(d, ids, amount_plus, at):
    ids = pa.array(ids, pa.int64())
    return pa.table({
        "dt": pa.array([d] * len(ids), pa.date32()),
        "id": ids,
        "name": pc.binary_join_element_wise("n", pc.cast(ids, pa.string()), ""),
        "amount": pc.add(pc.multiply(pc.cast(ids, pa.float64()), 0.5), amount_plus),
        "updated_at": pa.array([at] * len(ids), pa.timestamp("us", tz="UTC")),
    }, schema=schema)
chunk = []
for i in range(days):
    d = first + datetime.timedelta(days=i)
    chunk.append(day_rows(d, range(per_day), 0.0, datetime.datetime(d.year, d.month, d.day, 12, tzinfo=datetime.timezone.utc)))
    if len(chunk) == 30 or i == days - 1:
        write_deltalake(table, pa.concat_tables(chunk), mode="append", partition_by=["dt"])
        chunk = []
# The changes: updates of the first ids of the last `touched` days, inserts of new ids there.
at = datetime.datetime.fromisoformat(export_day + "T06:00:00+00:00")
parts = []
for i in range(days - touched, days):
    d = first + datetime.timedelta(days=i)
    n = changes // touched
    parts.append(day_rows(d, range(n // 2), 1.0, at))
    parts.append(day_rows(d, range(per_day, per_day + n - n // 2), 0.0, at))
os.makedirs(f"{t}/export/{export_day}")
pq.write_table(pa.concat_tables(parts), f"{t}/export/{export_day}/changes.parquet")
files = len(DeltaTable(table).file_uris())
print(f"merge table: {per_day * days:,} rows in {files} files of {days} days; "
      f"export: {sum(p.num_rows for p in parts):,} changes over {touched} days", file=sys.stderr)
import os; os._exit(0)
PY
    touch "$template/ready"
fi

# usage: timed OUT COMMAND...: wall seconds and peak RSS (KiB) of COMMAND into OUT.
timed() {
    local out="$1"; shift
    /usr/bin/time -f "%e %M" -o "$out" "$@" > "$out.log" 2>&1 || { tail -n 20 "$out.log" >&2; return 1; }
}

round() {
    local r="$1" p="$work/round-$1"
    rm -rf "$p" "$p-peer"
    cp -a "$template/project" "$p"
    cp -a "$template/project/warehouse/events/v1" "$p-peer"
    timed "$p.merge" "$sluice" --project "$p" run events --partition "$export_day" -q
    timed "$p.replace" "$sluice" --project "$p" run events_day --partition "$export_day" -q
    timed "$p.peer" python3 - "$p-peer" "$template/export/$export_day/changes.parquet" "$p.peer.files" <<'PY'
import sys, pyarrow.parquet as pq, pyarrow.compute as pc
from deltalake import DeltaTable
table, export, out = sys.argv[1:4]
src = pq.read_table(export)
days = ", ".join(f"'{d}'" for d in sorted(set(pc.unique(src["dt"]).to_pylist())))
m = (DeltaTable(table)
     .merge(source=src, predicate=f"t.dt IN ({days}) AND t.dt = s.dt AND t.id = s.id",
            source_alias="s", target_alias="t")
     .when_matched_update_all(predicate="s.updated_at > t.updated_at")
     .when_not_matched_insert_all()
     .execute())
open(out, "w").write(f"{m['num_target_files_scanned']} {m['num_target_files_skipped_during_scan']}")
import os; os._exit(0)
PY
    python3 - "$p/warehouse/events/v1" "$p-peer" "$r" "$p" <<'PY'
import sys, json, glob, os, duckdb
from deltalake import DeltaTable
ours, peer, r, p = sys.argv[1:5]
def summary(path):
    ds = DeltaTable(path).to_pyarrow_dataset()
    return duckdb.sql("select count(*), sum(hash(dt, id, name, amount, updated_at)) from ds").fetchall()[0]
same = summary(ours) == summary(peer)
last = sorted(glob.glob(f"{ours}/_delta_log/*.json"))[-1]
actions = [json.loads(l) for l in open(last)]
removed = sum(1 for a in actions if "remove" in a)
files = len(DeltaTable(ours).file_uris())
def t(f):
    s, kib = open(f).read().split()[-2:]
    return float(s), int(kib) / 1024
(m, mr), (rp, rr), (pe, pr) = t(f"{p}.merge"), t(f"{p}.replace"), t(f"{p}.peer")
scanned, skipped = open(f"{p}.peer.files").read().split()
print(f"merge round {r}: sluice merge {m:.2f} s, peak RSS {mr:.0f} MiB, {removed} files scanned "
      f"and rewritten (of {files}); replace of the day {rp:.2f} s, peak RSS {rr:.0f} MiB; "
      f"Python deltalake merge {pe:.2f} s, peak RSS {pr:.0f} MiB, {scanned} files scanned "
      f"({skipped} skipped); tables {'equal' if same else 'DIFFER'}", flush=True)
open(f"{p}.result", "w").write(f"{m} {mr} {rp} {rr} {pe} {pr} {removed} {int(same)}")
os._exit(0 if same else 1)
PY
    rm -rf "$p" "$p-peer"
}

for r in $(seq 1 "$rounds"); do round "$r"; done
python3 - "$memory_mb" "$work"/round-*.result <<'PY'
import sys, statistics
limit = int(sys.argv[1])
res = [list(map(float, open(f).read().split())) for f in sys.argv[2:]]
med = lambda i: statistics.median(r[i] for r in res)
peak = max(r[1] for r in res)
print(f"merge: median of {len(res)} rounds: sluice {med(0):.2f} s (peak RSS {peak:.0f} MiB, limit "
      f"{limit} + 128 MiB), {med(6):.0f} files scanned; replace {med(2):.2f} s "
      f"(peak RSS {max(r[3] for r in res):.0f} MiB): merge / replace {med(0) / med(2):.2f}x "
      f"(target <= 2); Python deltalake merge {med(4):.2f} s (peak RSS "
      f"{max(r[5] for r in res):.0f} MiB): sluice / peer {med(0) / med(4):.2f}x (target <= 1)")
PY
