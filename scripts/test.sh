#!/usr/bin/env bash
# Runs the whole kpistream test suite on a fresh machine: sets up the Python venv (the
# interop publisher, the SMTP sink of the alert tests), starts the PostgreSQL and MariaDB
# the SQL source tests query, builds once, and runs every test in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/python-venv.sh
export KPISTREAM_PYTHON="$PWD/.venv/bin/python"

# Exports KPISTREAM_TEST_POSTGRES_URL, KPISTREAM_TEST_MYSQL_URL and
# KPISTREAM_TEST_DB_PASSWORD for the databases that came up; tests of the others skip
# (or fail under CI=true).
bash scripts/services.sh
if [[ -f target/test-services.env ]]; then
    # shellcheck source=/dev/null
    source target/test-services.env
fi

# The headless Chromium of the console's browser tests (tests/browser.rs).
bash scripts/browser.sh

# Doc examples first (nextest does not run them), so the run closes on the suite's summary.
cargo test --doc
# The black-box suites run a second time with every server on PostgreSQL (a schema of
# its own each): the same behaviour, proven on both backends.
postgres_suites=(--test ingest --test admin --test permissions --test durability --test runner_service --test watch --test readme --test notify --test console --test browser)
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --all-targets --no-fail-fast
    # The same build as the first run (--all-targets; a narrower selection of targets
    # unifies features differently and rebuilds half the dependencies), filtered.
    KPISTREAM_TEST_DB=postgres cargo nextest run --all-targets --no-fail-fast \
        -E 'kind(test) & (binary(=ingest) | binary(=admin) | binary(=permissions) | binary(=durability) | binary(=runner_service) | binary(=watch) | binary(=readme) | binary(=notify) | binary(=console) | binary(=browser))'
else
    echo "cargo-nextest not found: running cargo test"
    cargo test --all-targets --no-fail-fast
    KPISTREAM_TEST_DB=postgres cargo test --no-fail-fast "${postgres_suites[@]}"
fi
