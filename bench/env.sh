#!/usr/bin/env bash
# Environments: `sluice env create` over a project of N tables (default 500), each with a
# live version, beside the nearest peer in the same sitting, rounds interleaved: a one-table
# `promote` and its `rollback` (one alias flipped in one catalog transaction, process start
# included in both). Each with its peak RSS. The warehouse's files are counted before and
# after every environment made: the target is at most 1 s and no data file written.
#
# usage: bench/env.sh   (bench/run.sh env)
# SLUICE_BENCH_ENV_TABLES (500) and SLUICE_BENCH_ENV_ROUNDS (10) size it; the catalog is
# the project's default (SQLite), or SLUICE_BENCH_ENV_CATALOG (a PostgreSQL URL of an
# empty database).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
tables="${SLUICE_BENCH_ENV_TABLES:-500}"
rounds="${SLUICE_BENCH_ENV_ROUNDS:-10}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$sluice" "$work/sluice-measured"; sluice="$work/sluice-measured"
p="$work/project"
mkdir -p "$p/jobs" "$p/migrations"
echo "# a benchmark project: the defaults" > "$p/sluice.toml"
args=(--project "$p")
[ -n "${SLUICE_BENCH_ENV_CATALOG:-}" ] && args+=(--catalog "$SLUICE_BENCH_ENV_CATALOG")

# N tables, each written by a job of one partition (`all`): every table gets a live version.
for i in $(seq -w 1 "$tables"); do
    echo "CREATE TABLE t$i (x BIGINT);" >> "$p/migrations/0001_tables.sql"
    printf 'version = 1\n[partitioning]\ngranularity = "none"\n[output]\ntable = "t%s"\n' "$i" > "$p/jobs/t$i.toml"
    echo "SELECT $((10#$i)) AS x" > "$p/jobs/t$i.sql"
done
"$sluice" "${args[@]}" migrate -q > /dev/null
echo "env: writing one partition into each of $tables tables ..." >&2
"$sluice" "${args[@]}" backfill --from 2024-01-01 --to 2024-01-01 -q > /dev/null
# The peer's second version: t1's v2, to promote and roll back.
first="t$(seq -w 1 "$tables" | head -1)"
sed -i 's/^version = 1/version = 2/' "$p/jobs/$first.toml"
"$sluice" "${args[@]}" run "$first" --partition all -q > /dev/null

python3 - "$sluice" "$p" "$rounds" "$tables" "$first" "${args[@]}" <<'PY'
import json, os, statistics, subprocess, sys, time
sluice, p, rounds, tables, first, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6:]

def timed(extra):
    """Wall ms, peak RSS (MiB) and stdout of one sluice command (its output is a line or
    two: waited for before it is read)."""
    t = time.perf_counter()
    child = subprocess.Popen([sluice, *args, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    ms = (time.perf_counter() - t) * 1000
    out, err = child.stdout.read().decode(), child.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(extra)} failed: {err}")
    return ms, usage.ru_maxrss / 1024, out

def files():
    return sum(len(fs) for _, _, fs in os.walk(os.path.join(p, "warehouse")))

create, flip, rss_create, rss_flip = [], [], [], []
for r in range(rounds):
    before = files()
    ms, rss, out = timed(["env", "create", f"e{r}"])
    assert f"{tables} table alias(es) copied, no data written" in out, out
    assert files() == before, f"env create wrote {files() - before} file(s)"
    create.append(ms); rss_create.append(rss)
    for extra in (["promote", first, "--version", "2", "-q"], ["rollback", first, "-q"]):
        ms, rss, _ = timed(extra)
        flip.append(ms); rss_flip.append(rss)
listed = json.loads(subprocess.run([sluice, *args, "env", "list", "--output", "json"],
                                   check=True, capture_output=True).stdout)
assert len(listed) == rounds and all(e["tables"] == tables for e in listed), listed
c, f = statistics.median(create), statistics.median(flip)
print(f"env create over {tables} tables: {c:.1f} ms median of {rounds} (longest {max(create):.1f} ms; "
      f"target <= 1000 ms), peak RSS {max(rss_create):.0f} MiB, no data file written; one-table "
      f"promote/rollback {f:.1f} ms median of {len(flip)}, peak RSS {max(rss_flip):.0f} MiB: "
      f"ratio {c/f:.2f}")
PY

# The README's pull-request recipe on a copy of the sample project whose production holds
# the sample month: env create, plan, apply over three days (and what their windows read),
# diff of the changed table and of one it does not reach, drop; each step's wall time and
# peak RSS, and the whole. The peer, in the same sitting: the same build without an
# environment, `backfill JOB --partitions ... --force` of exactly the partitions the apply
# built, job by job, in production's own tables (of a second copy). Target: the recipe
# within 60 s.
s="$work/sample"; peer="$work/peer"
mkdir -p "$s"
for d in jobs migrations sample-data scripts; do cp -r "$repo/$d" "$s/$d"; done
cp "$repo/sluice.toml" "$s/sluice.toml"
echo "env: the sample month into production ..." >&2
"$sluice" --project "$s" migrate -q > /dev/null
"$sluice" --project "$s" backfill --from 2024-01-01 --to 2024-01-31 -q > /dev/null
sed -i "s/WHERE status <> 'cancelled'/WHERE status <> 'cancelled' AND quantity >= 3/" "$s/jobs/clean_orders.sql"
cp -r "$s" "$peer"
python3 - "$sluice" "$s" "$peer" <<'PY'
import json, os, subprocess, sys, time
sluice, s, peer = sys.argv[1:4]

def rss_of(project, extra, ok=(0,)):
    """Wall ms and peak RSS (MiB) of one command, from wait4."""
    t = time.perf_counter()
    child = subprocess.Popen([sluice, "--project", project, *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    ms = (time.perf_counter() - t) * 1000
    code = os.waitstatus_to_exitcode(status)
    if code not in ok:
        sys.exit(f"{' '.join(extra)} exited {code}")
    return ms, usage.ru_maxrss / 1024, out.decode()

steps = [
    ("env create", ["env", "create", "pr_1", "--ttl", "7d"], (0,)),
    ("plan", ["plan", "--env", "pr_1"], (0,)),
    ("apply", ["apply", "--env", "pr_1", "--from", "2024-01-29", "--to", "2024-01-31", "--output", "json", "-q"], (0,)),
    ("diff clean_orders (gate: exit 1)", ["diff", "clean_orders", "--env", "pr_1", "--fail-above", "0.01"], (1,)),
    ("diff customers", ["diff", "customers", "--env", "pr_1", "--fail-above", "0.01"], (0,)),
    ("env drop", ["env", "drop", "pr_1"], (0,)),
]
total, peak, built = 0.0, 0.0, None
for name, extra, ok in steps:
    ms, rss, out = rss_of(s, extra, ok)
    total += ms; peak = max(peak, rss)
    print(f"  {name}: {ms:.0f} ms, peak RSS {rss:.0f} MiB")
    if name == "apply":
        built = json.loads(out)
        apply_ms, apply_rss = ms, rss
# The peer builds exactly the partitions the apply built, job by job, in production's tables.
by_job = {}
for i in built["summary"]["items"]:
    by_job.setdefault(i["job"], set()).add(i["partition"].split(":")[0])
n = built["summary"]["succeeded"]
peer_ms, peer_rss = 0.0, 0.0
for job, times in sorted(by_job.items()):
    ms, rss, _ = rss_of(peer, ["backfill", job, "--partitions", ",".join(sorted(times)), "--force", "-q"])
    peer_ms += ms; peer_rss = max(peer_rss, rss)
print(f"recipe on the sample project: {total/1000:.1f} s in all (target <= 60 s), peak RSS {peak:.0f} MiB; "
      f"its apply built {n} partitions in {apply_ms:.0f} ms ({apply_rss:.0f} MiB) against forced backfills of "
      f"the same partitions in production's tables, {len(by_job)} commands, {peer_ms:.0f} ms in all "
      f"(peak {peer_rss:.0f} MiB): ratio {apply_ms/peer_ms:.2f}")
PY
