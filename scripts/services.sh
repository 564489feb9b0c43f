#!/usr/bin/env bash
# Starts the databases kpistream's SQL source tests run against, on this machine only
# (loopback): PostgreSQL (the installed cluster, installed first if missing) and MariaDB
# (installed with apt-get if missing). Each gets a role `kpistream` with a test password
# and a database `kpistream_test` it owns.
#
# It exports nothing itself: for every database that is up it writes an `export` line
# to target/test-services.env, which scripts/test.sh sources:
#   KPISTREAM_TEST_POSTGRES_URL=postgres://kpistream@127.0.0.1:5432/kpistream_test
#   KPISTREAM_TEST_MYSQL_URL=mysql://kpistream@127.0.0.1:3306/kpistream_test
#   KPISTREAM_TEST_DB_PASSWORD=...   (KPISTREAM_TEST_DB_PASSWORD in the environment wins)
#
# Needs root (Debian). Idempotent: a database already running is left running, an
# existing role gets its password set again. Never fails the caller: when a database
# cannot be started it says why and leaves its variable out, so the tests that need it
# skip (or fail under CI=true).
# Usage: scripts/services.sh
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
env_file="$root/target/test-services.env"
password="${KPISTREAM_TEST_DB_PASSWORD:-kpistream-test-only-7c1e}"
export DEBIAN_FRONTEND=noninteractive

say() { echo "services: $*"; }

mkdir -p "$root/target"
rm -f "$env_file"

apt_updated=""
apt_install() {
  if [[ -z "$apt_updated" ]]; then
    say "apt-get update"
    apt-get update -qq || return 1
    apt_updated=1
  fi
  say "apt-get install -y $*"
  apt-get install -y -qq "$@" >/dev/null || return 1
}

# PostgreSQL --------------------------------------------------------------------------

start_postgres() {
  if ! command -v pg_lsclusters >/dev/null; then
    say "PostgreSQL is not installed: installing it"
    apt_install postgresql
  fi
  local cluster
  cluster="$(pg_lsclusters --no-header | awk 'NR == 1 { print $1 " " $2 }')"
  if [[ -z "$cluster" ]]; then
    local version
    version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    say "no PostgreSQL cluster: creating $version main"
    pg_createcluster "$version" main
    cluster="$version main"
  fi
  local port
  port="$(pg_lsclusters --no-header | awk -v c="$cluster" '$1 " " $2 == c { print $3 }')"
  if [[ "$port" != 5432 ]]; then
    echo "PostgreSQL cluster $cluster listens on port $port, not 5432" >&2
    return 1
  fi
  if pg_lsclusters --no-header | awk -v c="$cluster" '$1 " " $2 == c { print $4 }' | grep -q online; then
    say "PostgreSQL $cluster is already running"
  else
    say "starting PostgreSQL $cluster"
    # shellcheck disable=SC2086 # "$cluster" is "VERSION NAME", two arguments.
    pg_ctlcluster $cluster start </dev/null
  fi
  say "PostgreSQL: role kpistream and database kpistream_test"
  # The password is a literal in SQL: it must not contain a single quote.
  su postgres -c "psql -v ON_ERROR_STOP=1 -qtA" <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kpistream') THEN
    CREATE ROLE kpistream LOGIN PASSWORD '$password';
  ELSE
    ALTER ROLE kpistream LOGIN PASSWORD '$password';
  END IF;
END
\$\$;
SQL
  if [[ -z "$(su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname = 'kpistream_test'\"" </dev/null)" ]]; then
    su postgres -c "psql -v ON_ERROR_STOP=1 -qc 'CREATE DATABASE kpistream_test OWNER kpistream'" </dev/null
  fi
  PGPASSWORD="$password" psql -h 127.0.0.1 -U kpistream -d kpistream_test -qtAc 'SELECT 1' </dev/null >/dev/null
}

# MariaDB -----------------------------------------------------------------------------

mariadb_up() { mariadb -e 'SELECT 1' </dev/null >/dev/null 2>&1; }

start_mariadb() {
  if ! command -v mariadbd >/dev/null && ! command -v mysqld >/dev/null; then
    say "MariaDB is not installed: installing mariadb-server"
    apt_install mariadb-server
  fi
  if mariadb_up; then
    say "MariaDB is already running"
  else
    say "starting MariaDB (mysqld_safe, log in /var/log/kpistream-mysqld_safe.log)"
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld
    # Detached from this script's terminal and output, so whoever waits for the test
    # run's output does not wait for the server too.
    setsid nohup mysqld_safe </dev/null >/var/log/kpistream-mysqld_safe.log 2>&1 &
    local waited=0
    until mariadb_up; do
      if ((waited >= 60)); then
        echo "MariaDB did not answer within 60 s; see /var/log/kpistream-mysqld_safe.log and /var/log/mysql/error.log" >&2
        return 1
      fi
      sleep 1
      waited=$((waited + 1))
    done
  fi
  say "MariaDB: user kpistream and database kpistream_test"
  # Over TCP from 127.0.0.1 the server may see the client as either host: make both.
  mariadb -v <<SQL >/dev/null
CREATE DATABASE IF NOT EXISTS kpistream_test;
CREATE USER IF NOT EXISTS 'kpistream'@'localhost' IDENTIFIED BY '$password';
CREATE USER IF NOT EXISTS 'kpistream'@'127.0.0.1' IDENTIFIED BY '$password';
ALTER USER 'kpistream'@'localhost' IDENTIFIED BY '$password';
ALTER USER 'kpistream'@'127.0.0.1' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON kpistream_test.* TO 'kpistream'@'localhost';
GRANT ALL PRIVILEGES ON kpistream_test.* TO 'kpistream'@'127.0.0.1';
SQL
  mariadb -h 127.0.0.1 -P 3306 -u kpistream -p"$password" kpistream_test -e 'SELECT 1' </dev/null >/dev/null
}

# -------------------------------------------------------------------------------------

if [[ "$(id -u)" != 0 ]]; then
  say "not root: not starting PostgreSQL or MariaDB (the SQL source tests that need them skip, or fail under CI=true)"
  exit 0
fi

any=""
(set -e; start_postgres)
if [[ $? == 0 ]]; then
  echo "export KPISTREAM_TEST_POSTGRES_URL=postgres://kpistream@127.0.0.1:5432/kpistream_test" >>"$env_file"
  say "PostgreSQL ready"
  any=1
else
  say "PostgreSQL could not be started (see above): its tests skip, or fail under CI=true"
fi

(set -e; start_mariadb)
if [[ $? == 0 ]]; then
  echo "export KPISTREAM_TEST_MYSQL_URL=mysql://kpistream@127.0.0.1:3306/kpistream_test" >>"$env_file"
  say "MariaDB ready"
  any=1
else
  say "MariaDB could not be started (see above): its tests skip, or fail under CI=true"
fi

if [[ -n "$any" ]]; then
  echo "export KPISTREAM_TEST_DB_PASSWORD='$password'" >>"$env_file"
  chmod 600 "$env_file"
  say "wrote $env_file"
fi
exit 0
