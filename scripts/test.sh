#!/usr/bin/env bash
# Runs the whole kpistream test suite on a fresh machine: sets up the Python venv the
# interop test publishes from, builds once, and runs every test in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/python-venv.sh
export KPISTREAM_PYTHON="$PWD/.venv/bin/python"

# Doc examples first (nextest does not run them), so the run closes on the suite's summary.
cargo test --doc
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --all-targets --no-fail-fast
else
    echo "cargo-nextest not found: running cargo test"
    cargo test --all-targets --no-fail-fast
fi
