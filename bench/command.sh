#!/usr/bin/env bash
# The command-input benchmark: a program that writes 10M rows as an Arrow IPC stream to its
# standard output, read by a job as a `type = "command"` input under `[engine]
# memory_limit_mb` (default 256), beside the two steps it replaces, measured in the same
# sitting: the same program writing a file, then a job reading that file. Prints each
# time with its peak RSS (target: the command input's peak at most memory_limit_mb + 64
# MiB; its time about the two steps'), and checks both tables hold the same rows.
#
# usage: bench/command.sh   (bench/run.sh command)
# SLUICE_BENCH_COMMAND_ROWS (10000000), _MEMORY_MB (256), _ROUNDS (3) size it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
rows="${SLUICE_BENCH_COMMAND_ROWS:-10000000}"
memory_mb="${SLUICE_BENCH_COMMAND_MEMORY_MB:-256}"
rounds="${SLUICE_BENCH_COMMAND_ROUNDS:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$sluice" "$work/sluice-measured"; sluice="$work/sluice-measured"

p="$work/project"
mkdir -p "$p/jobs" "$p/migrations" "$p/scripts" "$p/data"
printf '[engine]\nmemory_limit_mb = %s\n' "$memory_mb" > "$p/sluice.toml"
cat > "$p/scripts/gen.py" <<'PY'
# Writes N rows (id, amount, note) as an Arrow IPC stream, 100,000 at a time, to stdout or
# to the file its second argument names.
import sys, pyarrow as pa, pyarrow.compute as pc
n = int(sys.argv[1])
out = open(sys.argv[2], "wb") if len(sys.argv) > 2 else sys.stdout.buffer
schema = pa.schema([("id", pa.int64()), ("amount", pa.float64()), ("note", pa.string())])
with pa.ipc.new_stream(out, schema) as w:
    for start in range(0, n, 100_000):
        ids = pa.array(range(start, min(n, start + 100_000)), pa.int64())
        w.write_batch(pa.record_batch([ids, pc.multiply(pc.cast(ids, pa.float64()), 0.25),
                                       pc.binary_join_element_wise("note-", pc.cast(ids, pa.string()), "")],
                                      schema=schema))
out.flush()
PY
cat > "$p/migrations/0001_rows.sql" <<'SQL'
CREATE TABLE from_command (id BIGINT, amount DOUBLE, note STRING);
CREATE TABLE from_file (id BIGINT, amount DOUBLE, note STRING);
SQL
schema='schema = ["id BIGINT", "amount DOUBLE", "note STRING"]'
cat > "$p/jobs/from_command.toml" <<TOML
version = 1
[partitioning]
granularity = "none"
[[inputs]]
name = "source"
type = "command"
command = ["python3", "scripts/gen.py", "$rows"]
format = "arrow"
$schema
[output]
table = "from_command"
TOML
cat > "$p/jobs/from_file.toml" <<TOML
version = 1
[partitioning]
granularity = "none"
[[inputs]]
name = "source"
path = "data/rows.arrow"
format = "arrow"
$schema
[output]
table = "from_file"
TOML
for j in from_command from_file; do echo 'SELECT id, amount, note FROM source' > "$p/jobs/$j.sql"; done
"$sluice" --project "$p" migrate -q > /dev/null

t() { python3 -c 'import sys; s, kib = open(sys.argv[1]).read().split()[-2:]; print(s, int(kib) // 1024)' "$1"; }
for r in $(seq 1 "$rounds"); do
    /usr/bin/time -f '%e %M' -o "$work/c.time" "$sluice" --project "$p" run from_command --partition all -q > /dev/null
    (cd "$p" && /usr/bin/time -f '%e %M' -o "$work/g.time" python3 scripts/gen.py "$rows" data/rows.arrow)
    /usr/bin/time -f '%e %M' -o "$work/f.time" "$sluice" --project "$p" run from_file --partition all -q > /dev/null
    read -r cs cm < <(t "$work/c.time"); read -r gs gm < <(t "$work/g.time"); read -r fs fm < <(t "$work/f.time")
    echo "$cs $cm $gs $gm $fs $fm" > "$work/round-$r"
    echo "command round $r: command input ${cs} s, peak RSS ${cm} MiB; the program to a file ${gs} s (${gm} MiB), then a file input ${fs} s (peak RSS ${fm} MiB)"
    rm -f "$p/data/rows.arrow"
done
python3 - "$p/warehouse" "$rows" <<'PY'
import sys, duckdb
from deltalake import DeltaTable
w, n = sys.argv[1], int(sys.argv[2])
def summary(t):
    ds = DeltaTable(f"{w}/{t}/v1").to_pyarrow_dataset()
    return duckdb.sql("select count(*), count(distinct id), sum(amount) from ds").fetchall()[0]
a, b = summary("from_command"), summary("from_file")
ok = a == b and a[0] == n == a[1]
print(f"command tables: {a} and {b}: {'equal, every row once' if ok else 'NOT as expected'}")
import os; os._exit(0 if ok else 1)
PY
python3 - "$memory_mb" "$rows" "$work"/round-* <<'PY'
import sys, statistics
limit, n = int(sys.argv[1]), int(sys.argv[2])
res = [list(map(float, open(f).read().split())) for f in sys.argv[3:]]
med = lambda i: statistics.median(r[i] for r in res)
two = med(2) + med(4)
print(f"command: {n:,} rows, median of {len(res)}: command input {med(0):.2f} s, peak RSS "
      f"{max(r[1] for r in res):.0f} MiB (target <= {limit} + 64); program to a file then a file "
      f"input {two:.2f} s (peak RSS {max(r[5] for r in res):.0f} MiB): ratio {med(0) / two:.2f}")
PY
