# What every benchmark script starts with, sourced after `set -euo pipefail`: where the
# repository and the build are, and the binary to measure. Sets `here`, `repo`, `sluice`.
here="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
repo="$(dirname "$here")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
# SLUICE_BENCH_BIN=/path/to/sluice measures that binary instead of building this checkout.
if [ -n "${SLUICE_BENCH_BIN:-}" ]; then
    sluice="$SLUICE_BENCH_BIN"
else
    (cd "$repo" && cargo build --release --quiet --bin sluice)
    sluice="$CARGO_TARGET_DIR/release/sluice"
fi
# The Python packages the peers and the independent readers need.
python3 -c 'import duckdb, deltalake, pyarrow' 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check duckdb deltalake pyarrow

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The peak RSS (KiB) of a running process.
peak_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
