#!/usr/bin/env bash
# Publishing into PostgreSQL: kpistream with one server, then two servers on the same
# database, then a raw `COPY` of as many rows of the same shape into a bare table with
# the points table's primary key, all in one run (see docs/benchmarks.md).
#
#   bash scripts/services.sh          # as root: PostgreSQL with the test role and database
#   cargo build --release && POINTS=200000 bench/postgres.sh
#
# It works in a schema of its own on the test database and drops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
K="$PWD/target/release/kpistream"
source target/test-services.env
PW="$KPISTREAM_TEST_DB_PASSWORD"
SCHEMA=kpi_bench_$RANDOM
export PGPASSWORD="$PW"
PSQL="psql -h 127.0.0.1 -U kpistream -d kpistream_test -qtA"
$PSQL -c "CREATE SCHEMA $SCHEMA"
URL="postgres://kpistream:$PW@127.0.0.1:5432/kpistream_test?options=-c%20search_path%3D$SCHEMA"
work=$(mktemp -d)
cleanup() {
  kill "${servers[@]}" $(jobs -p) 2>/dev/null || true
  sleep 1
  $PSQL -c "DROP SCHEMA $SCHEMA CASCADE" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
servers=()
start() { # NAME: starts a server, sets $addr to its gRPC address
  $K serve --db "$URL" --listen 127.0.0.1:0 --http 127.0.0.1:0 --admin-token-file "$work/admin.token" > "$work/$1.out" 2> "$work/$1.err" &
  servers+=($!)
  for _ in $(seq 100); do grep -q "gRPC listening" "$work/$1.out" 2>/dev/null && break; sleep 0.1; done
  addr=$(grep "gRPC listening" "$work/$1.out" | awk '{print "http://"$4}')
}
start a; A=$addr
POINTS=${POINTS:-200000}
STREAMS=${STREAMS:-1}
UPDATES=${UPDATES:-0}
echo "== 1 server, $POINTS points, 1000-point batches, 8 publishers, $STREAMS stream(s)"
$K bench --server "$A" --token-file "$work/admin.token" --points $POINTS --batch-size 1000 --publishers 8 --streams "$STREAMS" --update-share "$UPDATES" 2>&1 | grep -E "throughput|latency"
start b; B=$addr
echo "== 2 servers, 4 publishers each, $POINTS points in all"
t0=$(date +%s.%N)
$K bench --server "$A" --token-file "$work/admin.token" --points $((POINTS/2)) --batch-size 1000 --publishers 4 --streams "$STREAMS" --start 2100-01-01 > "$work/ba.txt" 2>&1 &
pa=$!
$K bench --server "$B" --token-file "$work/admin.token" --points $((POINTS/2)) --batch-size 1000 --publishers 4 --streams "$STREAMS" --start 2100-01-01 > "$work/bb.txt" 2>&1 &
pb=$!
wait $pa $pb
t1=$(date +%s.%N)
grep -h throughput "$work/ba.txt" "$work/bb.txt"
python3 -c "print('  together: %.0f points/s' % ($POINTS/($t1-$t0)))"
echo "== raw COPY of $POINTS rows into a bare table"
python3 - "$work/rows.csv" $POINTS <<'PY'
import sys, datetime
n=int(sys.argv[2]); d0=datetime.date(1900,1,1)
with open(sys.argv[1],'w') as f:
    for i in range(n):
        period = (d0 + datetime.timedelta(days=i)).isoformat()
        f.write("1,%s,%d.25,,0192b3c4-5d6e-7f80-9a0b-%012x,key_abcdefghijklmnopqrstu,1700000000000000\n" % (period, i, i // 1000))
PY
$PSQL -c "CREATE TABLE $SCHEMA.raw (stream BIGINT, period TEXT, value TEXT, external_id TEXT, batch_id TEXT, key_id TEXT, updated_at BIGINT, PRIMARY KEY (stream, period))"
t0=$(date +%s.%N)
$PSQL -c "\\copy $SCHEMA.raw FROM '$work/rows.csv' WITH (FORMAT csv)"
t1=$(date +%s.%N)
python3 -c "print('  raw COPY: %.0f rows/s' % ($POINTS/($t1-$t0)))"
