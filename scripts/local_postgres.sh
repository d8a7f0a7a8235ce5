#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on a loopback port for tests, owned by the postgres
# system user (the server refuses to run as root), and print its URL.
#   eval "$(scripts/local_postgres.sh start)"   # exports CHURN_TEST_POSTGRES_URL, CHURN_TEST_PGDATA
#   scripts/local_postgres.sh stop "$CHURN_TEST_PGDATA"
set -Eeuo pipefail

pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_postgres() { su postgres -s /bin/sh -c "$*"; }

case "${1:-}" in
  start)
    port=${CHURN_TEST_PG_PORT:-55432}
    data=$(mktemp -d /tmp/churn-test-postgres.XXXXXX)
    # A cluster that cannot start (say, its port is taken) leaves nothing behind.
    trap 'as_postgres "$pg_bin/pg_ctl -D $data -m fast stop" >/dev/null 2>&1 || true; rm -rf "$data"' ERR
    chown postgres:postgres "$data"
    as_postgres "$pg_bin/initdb -D $data -A trust -U postgres" >/dev/null
    # Every role is trusted but one, which must give its password over TCP: the tests of a
    # refused login need a server that refuses one (the first matching line decides).
    as_postgres "sed -i '1i host all churn_password_login 127.0.0.1/32 scram-sha-256' $data/pg_hba.conf"
    as_postgres "$pg_bin/pg_ctl -D $data -l $data/server.log -w \
      -o '-p $port -k $data -c listen_addresses=127.0.0.1 -c max_connections=200' start" >/dev/null
    "$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres churn_test
    echo "export CHURN_TEST_PGDATA=$data"
    echo "export CHURN_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:$port/churn_test"
    ;;
  stop)
    data=${2:?usage: $0 stop <data folder>}
    as_postgres "$pg_bin/pg_ctl -D $data -m fast stop" >/dev/null 2>&1 || true
    rm -rf "$data"
    ;;
  *)
    echo "usage: $0 start | stop <data folder>" >&2
    exit 2
    ;;
esac
