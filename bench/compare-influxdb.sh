#!/usr/bin/env bash
# Runs the same workloads against kpistream and InfluxDB 1.x, back to back on this
# machine, both durable (kpistream: SQLite WAL with synchronous=FULL; InfluxDB: its WAL
# fsync'd on every write), and prints both figures and the ratio kpistream/InfluxDB.
#
#   bench/compare-influxdb.sh            # as root on Debian (it may apt-get InfluxDB)
#   BATCHED_POINTS=500000 SINGLE_POINTS=50000 bench/compare-influxdb.sh
#
# InfluxDB comes from Debian's `influxdb` package, unpacked into a temporary folder
# (apt-get download + dpkg -x; nothing is installed), or INFLUXD=/path/to/influxd.
# Both systems get the same points from `kpistream bench` (--embedded, then
# --influxdb), with the same counts, batch sizes and publishers. Everything it starts
# and writes goes when it exits. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

batched_points="${BATCHED_POINTS:-200000}"
single_points="${SINGLE_POINTS:-20000}"

work="$(mktemp -d -t kpistream-compare-XXXXXX)"
influxd_pid=""
cleanup() {
    if [[ -n "$influxd_pid" ]]; then
        kill "$influxd_pid" 2>/dev/null || true
        wait "$influxd_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "compare-influxdb: $*" >&2; }

# The influxd binary: $INFLUXD, or Debian's package unpacked in $work.
influxd_binary() {
    if [[ -n "${INFLUXD:-}" ]]; then
        echo "$INFLUXD"
        return
    fi
    say "fetching Debian's influxdb package"
    if ! (cd "$work" && apt-get download influxdb >/dev/null 2>&1); then
        apt-get update -qq >&2
        (cd "$work" && apt-get download influxdb >&2)
    fi
    dpkg -x "$work"/influxdb_*.deb "$work/pkg"
    echo "$work/pkg/usr/bin/influxd"
}

# A local TCP port nothing answers on (bash's /dev/tcp, so no extra tool is needed).
free_port() {
    local port
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    say "found no free local port"
    exit 1
}

# An HTTP/1.0 request to InfluxDB; prints the status line.
http() {
    local method="$1" path="$2"
    exec 3<>"/dev/tcp/127.0.0.1/$influx_port"
    printf '%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n' "$method" "$path" >&3
    head -n 1 <&3
    exec 3<&-
}

start_influxd() {
    local binary="$1"
    influx_port="$(free_port)"
    local rpc_port
    rpc_port="$(free_port)"
    mkdir -p "$work/influxdb"
    cat > "$work/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$rpc_port"

[meta]
  dir = "$work/influxdb/meta"

[data]
  dir = "$work/influxdb/data"
  wal-dir = "$work/influxdb/wal"
  # Durable like kpistream: the WAL is fsync'd before each write is answered.
  wal-fsync-delay = "0s"
  query-log-enabled = false

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$influx_port"
  auth-enabled = false
  log-enabled = false

[logging]
  level = "warn"
CONF
    "$binary" -config "$work/influxdb.conf" > "$work/influxd.log" 2>&1 &
    influxd_pid=$!
    for _ in $(seq 100); do
        if [[ "$(http GET /ping 2>/dev/null)" == *" 204 "* ]]; then
            return
        fi
        if ! kill -0 "$influxd_pid" 2>/dev/null; then
            say "influxd exited at start; its log:"
            cat "$work/influxd.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    say "influxd did not answer /ping within 10 s"
    exit 1
}

create_database() {
    local status
    status="$(http POST "/query?q=CREATE+DATABASE+$1")"
    if [[ "$status" != *" 200 "* ]]; then
        say "InfluxDB did not create database $1: $status"
        exit 1
    fi
}

# A number field of a `kpistream bench --json` document.
field() {
    sed -E "s/.*\"$2\":([-0-9.eE+]+).*/\\1/" <<< "$1"
}

say "building kpistream (release)"
cargo build --release --quiet --bin kpistream
kpistream="$PWD/target/release/kpistream"
influxd="$(influxd_binary)"
start_influxd "$influxd"
say "$("$influxd" version 2>/dev/null | head -n 1) on 127.0.0.1:$influx_port, data in $work"

rows=()
run_workload() {
    local name="$1" db="$2"
    shift 2
    say "$name: kpistream"
    local ours theirs
    ours="$("$kpistream" bench --embedded --json "$@")"
    create_database "$db"
    say "$name: InfluxDB"
    theirs="$("$kpistream" bench --json --influxdb "http://127.0.0.1:$influx_port/write?db=$db&precision=s" "$@")"
    rows+=("$name|$(field "$ours" points_per_s)|$(field "$theirs" points_per_s)|$(field "$ours" p99)|$(field "$theirs" p99)")
}

run_workload "1000-point batches, 8 publishers" batched \
    --points "$batched_points" --batch-size 1000 --publishers 8
run_workload "1-point writes, 64 publishers" single \
    --points "$single_points" --batch-size 1 --publishers 64

echo
echo "machine: $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
awk -F'|' 'BEGIN {
        printf "%-34s %14s %14s %7s %14s %14s\n", "workload", "kpistream pt/s", "InfluxDB pt/s", "ratio", "kpistream p99", "InfluxDB p99"
    }
    {
        printf "%-34s %14.0f %14.0f %6.2fx %11.2f ms %11.2f ms\n", $1, $2, $3, $2 / $3, $4, $5
    }' < <(printf '%s\n' "${rows[@]}")
