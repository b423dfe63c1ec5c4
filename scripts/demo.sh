#!/usr/bin/env bash
# Starts or stops the demo cluster: a private PostgreSQL whose data directory is .demo/ inside
# the checkout (ignored by git), with shared_preload_libraries = 'pg_trickle', listening on
# 127.0.0.1 at DEMO_PORT (default 5499, away from a system server's 5432). As root, the server
# runs as the postgres OS user, since PostgreSQL refuses to run as root.
#   scripts/demo.sh start   start (creating the cluster if needed) and load demo/demo.sql
#   scripts/demo.sh stop    stop it
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/bin/pg_config}
BIN=$("$PG_CONFIG" --bindir)
DEMO_DIR="$top/.demo"
DATA="$DEMO_DIR/data"
PORT=${DEMO_PORT:-5499}

as_server_user() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$@"
  else
    env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$@"
  fi
}

running() { [ -f "$DATA/PG_VERSION" ] && as_server_user "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

start() {
  mkdir -p "$DEMO_DIR"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$DEMO_DIR"
    if ! runuser -u postgres -- test -w "$DEMO_DIR"; then
      echo "the postgres user cannot reach $DEMO_DIR; make the checkout's parent directories searchable (chmod o+x)" >&2
      exit 1
    fi
  fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    as_server_user "$BIN/initdb" -D "$DATA" -A trust -U postgres -E UTF8 --locale=C >/dev/null
    cat >> "$DATA/postgresql.conf" <<CONF
shared_preload_libraries = 'pg_trickle'
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '/tmp'
CONF
  fi
  if ! running; then
    as_server_user "$BIN/pg_ctl" -D "$DATA" -l "$DEMO_DIR/server.log" -w start >/dev/null
  fi
  local psql=("$BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres)
  "${psql[@]}" -d postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'demo'" | grep -q 1 \
    || "${psql[@]}" -d postgres -c "CREATE DATABASE demo"
  "${psql[@]}" -d demo -v ON_ERROR_STOP=1 -f "$top/demo/demo.sql"
  cat <<MSG

The demo cluster is running (data directory $DATA, log $DEMO_DIR/server.log).
Connect with:   psql -h 127.0.0.1 -p $PORT -U postgres demo
Stop it with:   make stop
MSG
}

stop() {
  if running; then
    as_server_user "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    echo "demo cluster stopped"
  else
    echo "demo cluster is not running"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
