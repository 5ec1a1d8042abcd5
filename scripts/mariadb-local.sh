#!/usr/bin/env bash
# A throw-away MariaDB on 127.0.0.1 for the demo, the tests and the benchmarks.
#
#   scripts/mariadb-local.sh start    install mariadb-server if absent, start, print the URL
#   scripts/mariadb-local.sh stop     stop it (the data directory is kept)
#   scripts/mariadb-local.sh status   exit 0 when it answers
#   scripts/mariadb-local.sh url      print the URL
#   scripts/mariadb-local.sh clean    stop and delete the data directory
#
# Idempotent: start on a running instance only prints the URL. The server
# listens on 127.0.0.1 only, with user root / password root (the seed's
# defaults). Settings: KMS_MYSQL_PORT (default 3307), KMS_MYSQL_DIR
# (default /tmp/kms-mariadb), KMS_MYSQL_EXTRA_ARGS (more mariadbd options,
# e.g. --ssl-cert=... for the TLS tests).
set -euo pipefail

PORT="${KMS_MYSQL_PORT:-3307}"
DIR="${KMS_MYSQL_DIR:-/tmp/kms-mariadb}"
DATA="$DIR/data"
SOCK="$DIR/mysqld.sock"
PIDFILE="$DIR/mysqld.pid"
LOG="$DIR/mysqld.log"
URL="mysql://root:root@127.0.0.1:$PORT"

find_bin() {
    for b in "$@"; do
        if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return 0; fi
        for d in /usr/sbin /usr/bin /usr/local/bin; do
            if [ -x "$d/$b" ]; then echo "$d/$b"; return 0; fi
        done
    done
    return 1
}

install_if_missing() {
    if find_bin mariadbd >/dev/null && find_bin mariadb-install-db >/dev/null; then return 0; fi
    echo "mariadb-local: installing mariadb-server from Debian's packages" >&2
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    # policy-rc.d keeps the package's own service from starting.
    $SUDO apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >/dev/null
}

client() {
    "$(find_bin mariadb mysql)" --protocol=socket --socket="$SOCK" -uroot "$@"
}

answers() {
    # A real login, not `mysqladmin ping`, which succeeds even when access is denied.
    find_bin mariadb mysql >/dev/null || return 1
    "$(find_bin mariadb mysql)" --protocol=tcp -h127.0.0.1 -P"$PORT" -uroot -proot \
        --connect-timeout=2 -e "SELECT 1" >/dev/null 2>&1
}

running() {
    [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

start() {
    if answers; then echo "$URL"; return 0; fi
    install_if_missing
    mkdir -p "$DIR"
    if [ ! -d "$DATA/mysql" ]; then
        rm -rf "$DATA"
        "$(find_bin mariadb-install-db mysql_install_db)" --no-defaults --user=root \
            --datadir="$DATA" --auth-root-authentication-method=normal \
            --skip-test-db >"$DIR/install.log" 2>&1 || {
            cat "$DIR/install.log" >&2; exit 1; }
    fi
    if ! running; then
        # --no-defaults: ignore /etc/mysql so a system instance's settings never
        # leak in. Durability settings stay at the server defaults: tests
        # exercise the same commit path that production has. The buffer pool
        # holds several of bench-e2e's million-row tables (~250 MB each; it
        # drops each once checked); with 512 MB, whichever run came second
        # paid for evicting the first.
        nohup "$(find_bin mariadbd mysqld)" --no-defaults --user=root \
            --datadir="$DATA" --socket="$SOCK" --pid-file="$PIDFILE" \
            --port="$PORT" --bind-address=127.0.0.1 --skip-name-resolve \
            --max-connections=500 --innodb-buffer-pool-size=2G \
            --innodb-log-file-size=256M --max-allowed-packet=64M \
            --log-error="$LOG" ${KMS_MYSQL_EXTRA_ARGS:-} >/dev/null 2>&1 &
    fi
    for _ in $(seq 1 120); do
        if [ -S "$SOCK" ] && client -e "SELECT 1" >/dev/null 2>&1; then break; fi
        sleep 0.5
    done
    if ! client -e "SELECT 1" >/dev/null 2>&1; then
        echo "mariadb-local: server did not start; log follows" >&2
        tail -n 50 "$LOG" >&2 || true
        exit 1
    fi
    if ! answers; then
        client <<'SQL'
CREATE OR REPLACE USER 'root'@'127.0.0.1' IDENTIFIED BY 'root';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
CREATE OR REPLACE USER 'root'@'%' IDENTIFIED BY 'root';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
    fi
    answers || { echo "mariadb-local: started but TCP login as root failed" >&2; exit 1; }
    echo "$URL"
}

stop() {
    if [ -f "$PIDFILE" ]; then
        pid="$(cat "$PIDFILE")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) answers ;;
    url) echo "$URL" ;;
    clean) stop; rm -rf "$DIR" ;;
    *) echo "usage: $0 start|stop|status|url|clean" >&2; exit 2 ;;
esac
