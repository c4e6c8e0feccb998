#!/usr/bin/env bash
# The PostgreSQL-input benchmark: one partition of 5M rows read by a `type = "postgres"`
# input under `[engine] memory_limit_mb` (default 256), beside what it replaces, measured
# in the same sitting: `psql \copy` of the same rows to CSV, then a file input of that CSV.
# Prints each time with its peak RSS (target: the input at least as fast as the two steps),
# and checks both tables hold the same rows; then reads two more days of the table and
# checks every row against psql's own.
#
# usage: SLUICE_BENCH_PG_URL=postgres://USER:PASSWORD@HOST:PORT/postgres bench/postgres.sh
# (a user that may create databases; the benchmark's database is dropped at the end).
# SLUICE_BENCH_PG_ROWS (5000000), _MEMORY_MB (256), _ROUNDS (3) size it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
admin="${SLUICE_BENCH_PG_URL:?set SLUICE_BENCH_PG_URL to a PostgreSQL server URL}"
rows="${SLUICE_BENCH_PG_ROWS:-5000000}"
memory_mb="${SLUICE_BENCH_PG_MEMORY_MB:-256}"
rounds="${SLUICE_BENCH_PG_ROUNDS:-3}"
work="$(mktemp -d)"
db="sluice_bench_$(date +%s)"
cleanup() {
    rm -rf "$work"
    psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" > /dev/null 2>&1 || true
}
trap cleanup EXIT
cp "$sluice" "$work/sluice-measured"; sluice="$work/sluice-measured"
psql -q "$admin" -c "CREATE DATABASE $db" > /dev/null
url="$(python3 -c 'import sys, urllib.parse as u; p = u.urlparse(sys.argv[1]); print(p._replace(path="/" + sys.argv[2]).geturl())' "$admin" "$db")"
echo "generating $rows rows in $db ..." >&2
psql -q "$url" -v ON_ERROR_STOP=1 -c "CREATE TABLE orders (id bigint, amount float8, created_at timestamptz, note text);
  INSERT INTO orders SELECT g, g * 0.25, timestamptz '2024-03-01 00:00:00+00' + make_interval(secs => g * 86399.0 / $rows), 'note ' || g
  FROM generate_series(0, $rows - 1) AS g;
  INSERT INTO orders SELECT g, g * 0.25, timestamptz '2024-03-02 00:00:00+00' + make_interval(secs => (g - $rows) * 86.4), 'note ' || g
  FROM generate_series($rows, $rows + 1999) AS g; ANALYZE orders;"

p="$work/project"
mkdir -p "$p/jobs" "$p/migrations" "$p/data"
printf '[engine]\nmemory_limit_mb = %s\n' "$memory_mb" > "$p/sluice.toml"
query="SELECT id, amount, created_at, note FROM orders WHERE created_at >= \$partition_start AND created_at < \$partition_end"
schema='schema = ["id BIGINT", "amount DOUBLE", "created_at TIMESTAMP", "note STRING"]'
cat > "$p/migrations/0001_orders.sql" <<'SQL'
CREATE TABLE from_postgres (id BIGINT, amount DOUBLE, created_at TIMESTAMP, note STRING, dt DATE NOT NULL) PARTITIONED BY (dt);
CREATE TABLE from_csv (id BIGINT, amount DOUBLE, created_at TIMESTAMP, note STRING, dt DATE NOT NULL) PARTITIONED BY (dt);
SQL
cat > "$p/jobs/from_postgres.toml" <<TOML
version = 1
start = "2024-03-01"
[partitioning]
granularity = "daily"
[[inputs]]
name = "orders"
type = "postgres"
connection = "env:BENCH_DATABASE_URL"
query = "$query"
$schema
[output]
table = "from_postgres"
TOML
cat > "$p/jobs/from_csv.toml" <<TOML
version = 1
start = "2024-03-01"
[partitioning]
granularity = "daily"
[[inputs]]
name = "orders"
path = "data/orders-{partition}.csv"
format = "csv"
$schema
[output]
table = "from_csv"
TOML
for j in from_postgres from_csv; do echo 'SELECT id, amount, created_at, note FROM orders' > "$p/jobs/$j.sql"; done
"$sluice" --project "$p" migrate -q > /dev/null

t() { python3 -c 'import sys; s, kib = open(sys.argv[1]).read().split()[-2:]; print(s, int(kib) // 1024)' "$1"; }
for r in $(seq 1 "$rounds"); do
    BENCH_DATABASE_URL="$url" /usr/bin/time -f '%e %M' -o "$work/pg.time" \
        "$sluice" --project "$p" run from_postgres --partition 2024-03-01 -q > /dev/null
    /usr/bin/time -f '%e %M' -o "$work/copy.time" psql -q "$url" -c "\\copy (SELECT id, amount, created_at, note FROM orders WHERE created_at >= '2024-03-01T00:00:00Z' AND created_at < '2024-03-02T00:00:00Z') TO '$p/data/orders-2024-03-01.csv' CSV HEADER"
    /usr/bin/time -f '%e %M' -o "$work/csv.time" "$sluice" --project "$p" run from_csv --partition 2024-03-01 -q > /dev/null
    read -r ps pm < <(t "$work/pg.time"); read -r cs cm < <(t "$work/copy.time"); read -r fs fm < <(t "$work/csv.time")
    echo "$ps $pm $cs $cm $fs $fm" > "$work/round-$r"
    echo "postgres round $r: postgres input ${ps} s, peak RSS ${pm} MiB; psql \\copy to CSV ${cs} s (${cm} MiB), then a file input ${fs} s (peak RSS ${fm} MiB)"
done
python3 - "$p/warehouse" "$rows" <<'PY'
import sys, duckdb
from deltalake import DeltaTable
w, n = sys.argv[1], int(sys.argv[2])
def summary(t):
    ds = DeltaTable(f"{w}/{t}/v1").to_pyarrow_dataset()
    return duckdb.sql("select count(*), count(distinct id), sum(amount), max(created_at) from ds").fetchall()[0]
a, b = summary("from_postgres"), summary("from_csv")
ok = a == b and a[0] == n == a[1]
print(f"postgres tables: {a} and {b}: {'equal, every row once' if ok else 'NOT as expected'}")
import os; os._exit(0 if ok else 1)
PY
# Partition by partition: the two days after the measured one (1,000 rows each) read too,
# then every row of the table compared with what psql itself gives for the three days
# (its CSV read by DuckDB, not by sluice): none missing, none extra, none twice.
for d in 2024-03-02 2024-03-03; do
    BENCH_DATABASE_URL="$url" "$sluice" --project "$p" run from_postgres --partition "$d" -q > /dev/null
    psql -q "$url" -c "\\copy (SELECT id, amount, created_at, note FROM orders WHERE created_at >= '${d}T00:00:00Z' AND created_at < '$(date -u -d "$d + 1 day" +%F)T00:00:00Z') TO '$p/data/orders-$d.csv' CSV HEADER"
done
python3 - "$p" <<'PY'
import sys, duckdb
from deltalake import DeltaTable
p = sys.argv[1]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.register("ours", DeltaTable(f"{p}/warehouse/from_postgres/v1").to_pyarrow_dataset())
mine = "SELECT id, amount, epoch_us(created_at) AS t, note FROM ours"
psql = (f"SELECT id, amount, epoch_us(created_at) AS t, note FROM read_csv('{p}/data/orders-*.csv', header = true, "
        "columns = {'id': 'BIGINT', 'amount': 'DOUBLE', 'created_at': 'TIMESTAMPTZ', 'note': 'VARCHAR'})")
missing = con.sql(f"SELECT count(*) FROM (({psql}) EXCEPT ALL ({mine}))").fetchall()[0][0]
extra = con.sql(f"SELECT count(*) FROM (({mine}) EXCEPT ALL ({psql}))").fetchall()[0][0]
days = con.sql("SELECT dt, count(*) FROM ours GROUP BY dt ORDER BY dt").fetchall()
ok = missing == 0 and extra == 0 and len(days) == 3
print(f"postgres partition by partition: {', '.join(f'{d}: {n:,} rows' for d, n in days)}; against psql's own "
      f"rows: {missing} missing, {extra} extra: {'equal' if ok else 'NOT equal'}")
import os; os._exit(0 if ok else 1)
PY
python3 - "$memory_mb" "$rows" "$work"/round-* <<'PY'
import sys, statistics
limit, n = int(sys.argv[1]), int(sys.argv[2])
res = [list(map(float, open(f).read().split())) for f in sys.argv[3:]]
med = lambda i: statistics.median(r[i] for r in res)
two = med(2) + med(4)
print(f"postgres: {n:,} rows in one partition, median of {len(res)}: postgres input {med(0):.2f} s, "
      f"peak RSS {max(r[1] for r in res):.0f} MiB (memory_limit_mb {limit}); psql \\copy then a file "
      f"input {two:.2f} s (peak RSS {max(r[5] for r in res):.0f} MiB): ratio {med(0) / two:.2f} (target <= 1)")
PY
