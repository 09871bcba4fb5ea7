#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the test suite.
#
#   scripts/pg.sh start          start it (installing Debian's postgresql package if needed)
#   scripts/pg.sh stop           stop exactly the server that `start` started
#   scripts/pg.sh status         exit 0 if it runs
#   scripts/pg.sh url            print its URL
#   scripts/pg.sh run CMD...     start, run CMD with ONCEONLY_TEST_POSTGRES_URL set, stop;
#                                exits with CMD's status (the server is stopped even on failure)
#
# The cluster is our own (initdb under var/pg/data), never the distribution's cluster or
# service: it listens on 127.0.0.1 only, on a free port, with trust authentication and no
# Unix socket, and holds the database `onceonly_test`. Its URL is written to var/pg/url.
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system
# user that the package creates. Durability settings are off: this cluster is disposable;
# PG_DURABLE=1 starts it with fsync, synchronous_commit and full_page_writes on (make bench:
# a figure measured without durable commits would flatter the ledger).
#
# Environment: PG_DIR (default var/pg), PG_WAIT_S (default 60), PYTHON (default python3),
# PG_DURABLE (default 0).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_DIR=${PG_DIR:-var/pg}
PG_WAIT_S=${PG_WAIT_S:-60}
PYTHON=${PYTHON:-python3}
DB_NAME=onceonly_test
mkdir -p "$PG_DIR"
PG_DIR=$(cd "$PG_DIR" && pwd -P)
URL_FILE=$PG_DIR/url
DATA_FILE=$PG_DIR/datadir # where the cluster lives (var/pg/data unless postgres cannot reach it)

SCRIPT=pg.sh
ROOT_HINT="PostgreSQL is not installed and installing it needs root: run 'apt-get install postgresql' as root"
# shellcheck source=scripts/lib.sh
. "scripts/lib.sh"

find_bin() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

install_postgres() {
  command -v apt-get >/dev/null 2>&1 || die "no PostgreSQL under /usr/lib/postgresql and no apt-get to install it"
  say "installing PostgreSQL from the Debian packages"
  # Installing must not start the distribution's cluster: we run our own.
  local policy_rc=/usr/sbin/policy-rc.d created_policy=""
  if [ "$(id -u)" -eq 0 ] && [ ! -e "$policy_rc" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy_rc" && chmod +x "$policy_rc" && created_policy=1
  fi
  local status=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || status=$?
  if [ $status -eq 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql ||
      status=$?
  fi
  [ -n "$created_policy" ] && rm -f "$policy_rc"
  [ $status -eq 0 ] || die "apt-get failed ($status)"
}

# Run a command as the user that owns the cluster.
as_owner() {
  if [ "$(id -u)" -ne 0 ]; then
    "$@"
  elif command -v runuser >/dev/null 2>&1; then
    runuser -u postgres -- "$@"
  else
    su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
  fi
}

data_dir() {
  if [ -f "$DATA_FILE" ]; then cat "$DATA_FILE"; else echo "$PG_DIR/data"; fi
}

is_running() {
  local bin data
  bin=$(find_bin) || return 1
  data=$(data_dir)
  [ -f "$data/postmaster.pid" ] || return 1
  as_owner "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1
}

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

init_cluster() {
  local bin=$1 data
  data="$PG_DIR/data"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "no 'postgres' system user (the postgresql package creates it)"
    # The postgres user must reach the data directory; a checkout under /root is not reachable.
    if ! runuser -u postgres -- test -x "$PG_DIR" 2>/dev/null; then
      data=$(mktemp -d /tmp/onceonly-pg.XXXXXX)/data
      say "postgres cannot reach $PG_DIR; the cluster lives in $data"
    fi
    mkdir -p "$data"
    chown postgres "$data"
    [ "$data" = "$PG_DIR/data" ] || chown postgres "$(dirname "$data")"
  fi
  mkdir -p "$data"
  chmod 700 "$data"
  echo "$data" >"$DATA_FILE"
  as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
    >"$PG_DIR/initdb.log" 2>&1 || {
    cat "$PG_DIR/initdb.log" >&2
    die "initdb failed"
  }
  cat >>"$data/postgresql.conf" <<'CONF'

# --- onceonly test cluster (scripts/pg.sh): loopback only, disposable ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
}

start() {
  local bin data port
  bin=$(find_bin) || {
    install_postgres
    bin=$(find_bin) || die "PostgreSQL installed but no pg_ctl under /usr/lib/postgresql/*/bin"
  }
  if is_running && [ -s "$URL_FILE" ]; then
    say "already running: $(cat "$URL_FILE")"
    return 0
  fi
  data=$(data_dir)
  # A cluster of another major version (or a half-made one) is rebuilt.
  if [ ! -f "$data/PG_VERSION" ] || [ "$(cat "$data/PG_VERSION")" != "$("$bin/postgres" -V | sed -E 's/^[^0-9]*([0-9]+).*/\1/')" ]; then
    [ -d "$data" ] && rm -rf "$data"
    rm -f "$DATA_FILE"
    init_cluster "$bin"
    data=$(data_dir)
  fi
  port=$(free_port)
  local log_file
  log_file=$(dirname "$data")/server.log # next to the cluster, where its owner can write
  touch "$log_file"
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$log_file"; fi
  local server_options="-p $port"
  if [ "${PG_DURABLE:-0}" = 1 ]; then
    server_options="$server_options -c fsync=on -c synchronous_commit=on -c full_page_writes=on"
  fi
  as_owner "$bin/pg_ctl" start -D "$data" -l "$log_file" -o "$server_options" -w -t "$PG_WAIT_S" >/dev/null || {
    tail -n 20 "$log_file" >&2
    die "the server did not start"
  }
  local psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA)
  local deadline=$((SECONDS + PG_WAIT_S))
  until "${psql[@]}" -c 'SELECT 1' >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "the server does not answer on 127.0.0.1:$port"
    sleep 0.2
  done
  if [ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" ]; then
    "${psql[@]}" -c "CREATE DATABASE $DB_NAME" >/dev/null
  fi
  echo "postgresql+psycopg://postgres@127.0.0.1:$port/$DB_NAME" >"$URL_FILE"
  say "started: $(cat "$URL_FILE") (data $data, log $log_file)"
}

stop() {
  local bin data
  rm -f "$URL_FILE"
  bin=$(find_bin) || return 0
  data=$(data_dir)
  if [ -f "$data/postmaster.pid" ] && as_owner "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" stop -D "$data" -m fast -w -t "$PG_WAIT_S" >/dev/null || die "the server did not stop"
    say "stopped"
  fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) is_running ;;
url) cat "$URL_FILE" ;;
run)
  shift
  [ $# -gt 0 ] || die "usage: $0 run CMD..."
  start
  trap stop EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  status=0
  ONCEONLY_TEST_POSTGRES_URL=$(cat "$URL_FILE") "$@" || status=$?
  exit $status
  ;;
*)
  echo "usage: $0 start|stop|status|url|run CMD..." >&2
  exit 2
  ;;
esac
