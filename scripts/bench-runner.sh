#!/usr/bin/env bash
# Benchmark: how fast `kpistream connector run` pulls, maps, signs and publishes ROWS
# daily records (default 200,000) from a command source (JSON lines) and from a SQLite
# source, against the SDK's Publisher (examples/backfill_csv) loading the same rows, all
# in one run on one fresh server, so the figures compare as ratios. Prints rows/s and the
# peak memory of each client and of the server. Not part of the test suite.
# Usage: scripts/bench-runner.sh [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-200000}"

cargo build --release --quiet --bin kpistream --example backfill_csv
bin="$PWD/target/release/kpistream"
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 - "$rows" "$work" <<'PY'
import datetime, json, sqlite3, sys
rows, work = int(sys.argv[1]), sys.argv[2]
day, one = datetime.date(1000, 1, 1), datetime.timedelta(days=1)
data = []
for i in range(rows):
    data.append((day.isoformat(), f"{i}.{i % 100:02d}", f"row-{i}"))
    day += one
with open(f"{work}/points.csv", "w") as f:
    f.write("period,value,external_id\n")
    f.writelines(f"{d},{v},{e}\n" for d, v, e in data)
with open(f"{work}/points.jsonl", "w") as f:
    f.writelines(json.dumps({"day": d, "amount": v, "id": e}) + "\n" for d, v, e in data)
db = sqlite3.connect(f"{work}/source.db")
db.execute("CREATE TABLE sales (id INTEGER PRIMARY KEY, day TEXT, amount TEXT, ref TEXT)")
db.executemany("INSERT INTO sales (day, amount, ref) VALUES (?, ?, ?)", data)
db.commit()
PY

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" serve --db "sqlite://$work/kpistream.db" --admin-token-file "$work/admin.token" \
    --listen "127.0.0.1:$port" --http 127.0.0.1:0 > "$work/serve.out" 2> "$work/serve.err" &
server=$!
for _ in $(seq 100); do grep -q "gRPC listening" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
export KPISTREAM_SERVER="http://127.0.0.1:$port" KPISTREAM_TOKEN_FILE="$work/admin.token"
for name in sdk command sql; do
    "$bin" stream create --name "$name" --frequency daily --type number \
        --credential-out "$work/$name.kpik" > /dev/null 2>&1
done

mkdir "$work/connectors"
cat > "$work/connectors/command.toml" <<TOML
name = "bench-command"
credential_file = "$work/command.kpik"
schedule = "@daily"
[mapping]
period = "day"
value = "amount"
external_id = "id"
[source]
type = "command"
argv = ["cat", "$work/points.jsonl"]
timeout = "10m"
TOML
cat > "$work/connectors/sql.toml" <<TOML
name = "bench-sql"
credential_file = "$work/sql.kpik"
schedule = "@daily"
[mapping]
period = "day"
value = "amount"
external_id = "ref"
[source]
type = "sql"
url = "sqlite://$work/source.db"
query = "SELECT day, amount, ref FROM sales ORDER BY id"
statement_timeout = "10m"
TOML

# Wall time and peak RSS of one command, as "SECONDS KB".
measure() {
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$work/out" 2>&1 || { cat "$work/out"; exit 1; }
    cat "$work/time"
}
report() {
    read -r seconds kb <<< "$2"
    python3 -c "import sys; r, s, kb = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]); print(f'{sys.argv[4]:<34} {r / s:>10,.0f} rows/s   {s:6.2f} s   peak {kb / 1024:6.1f} MB')" \
        "$rows" "$seconds" "$kb" "$1"
}
echo "$rows rows per source; server idle RSS $(grep VmRSS /proc/$server/status | awk '{print $2, $3}')"
report "SDK Publisher (backfill_csv)" "$(KPISTREAM_CREDENTIAL_FILE="$work/sdk.kpik" measure ./target/release/examples/backfill_csv "$work/points.csv")"
report "connector run, command (JSON lines)" "$(measure "$bin" connector run bench-command --connectors "$work/connectors")"
report "connector run, SQLite" "$(measure "$bin" connector run bench-sql --connectors "$work/connectors")"
echo "server peak RSS: $(grep VmHWM /proc/$server/status | awk '{print $2, $3}')"
