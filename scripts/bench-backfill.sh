#!/usr/bin/env bash
# Benchmark: loads a generated CSV of ROWS daily points (default 1,000,000) into a fresh
# server with examples/backfill_csv.rs, and prints rows/s and the server's peak memory.
# Not part of the test suite. Usage: scripts/bench-backfill.sh [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"

cargo build --release --quiet --bin kpistream --example backfill_csv
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 - "$rows" "$work/points.csv" <<'PY'
import datetime, sys
rows, path = int(sys.argv[1]), sys.argv[2]
day, one = datetime.date(1000, 1, 1), datetime.timedelta(days=1)
with open(path, "w") as f:
    f.write("period,value,external_id\n")
    for i in range(rows):
        f.write(f"{day.isoformat()},{i}.{i % 100:02d},row-{i}\n")
        day += one
PY

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
./target/release/kpistream serve --db "sqlite://$work/kpistream.db" --admin-token-file "$work/admin.token" \
    --listen "127.0.0.1:$port" --http 127.0.0.1:0 > "$work/serve.out" 2> "$work/serve.err" &
server=$!
for _ in $(seq 100); do grep -q "gRPC listening" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
export KPISTREAM_SERVER="http://127.0.0.1:$port" KPISTREAM_TOKEN_FILE="$work/admin.token"
./target/release/kpistream stream create --name backfill --frequency daily --type number \
    --credential-out "$work/backfill.kpik" > /dev/null 2>&1
echo "idle server RSS: $(grep VmRSS /proc/$server/status | awk '{print $2, $3}')"
KPISTREAM_CREDENTIAL_FILE="$work/backfill.kpik" ./target/release/examples/backfill_csv "$work/points.csv"
echo "server peak RSS: $(grep VmHWM /proc/$server/status | awk '{print $2, $3}')"
