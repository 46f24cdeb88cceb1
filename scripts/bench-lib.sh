# Shared by the benchmark scripts (sourced, not run): a work directory, a
# primary archiving into $WORK/archive and a hot standby of it, loaded with
# pgbench until the archive holds $WAL_MB MiB of WAL, the standby caught up.
#
#   bench_ground NAME    # sets WORK, ARCH, P1, P2; defines as_pg, log,
#                        # psql1; removes WORK on exit unless KEEP=1
# Needs PGBIN, SCALE and WAL_MB set.

bench_ground() {
    WORK=${BENCH_DIR:-$(mktemp -d "/tmp/pgdrill-bench-$1.XXXXXX")}
    mkdir -p "$WORK"
    ARCH=$WORK/archive
    mkdir -p "$ARCH"
    if [ "$(id -u)" -eq 0 ]; then
        chown -R postgres: "$WORK"
        chmod 755 "$WORK"
        as_pg() { runuser -u postgres -- "$@"; }
    else
        as_pg() { "$@"; }
    fi

    free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
    P1=$(free_port)
    P2=$(free_port)

    cleanup() {
        set +e
        as_pg "$PGBIN/pg_ctl" stop -m immediate -D "$WORK/standby" >/dev/null 2>&1
        as_pg "$PGBIN/pg_ctl" stop -m immediate -D "$WORK/primary" >/dev/null 2>&1
        if [ -n "${KEEP:-}" ]; then
            echo "kept $WORK"
        else
            rm -rf "$WORK"
        fi
    }
    trap cleanup EXIT

    log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
    psql1() { as_pg "$PGBIN/psql" -X -q -At -h "$WORK" -p "$1" -U postgres -d postgres -c "$2"; }

    log "work directory $WORK"
    as_pg "$PGBIN/initdb" -D "$WORK/primary" -U postgres -A trust -N -k --locale=C -E UTF8 >/dev/null
    cat >>"$WORK/primary/postgresql.conf" <<EOF
listen_addresses = ''
port = $P1
unix_socket_directories = '$WORK'
wal_level = replica
max_wal_senders = 5
hot_standby = on
archive_mode = on
archive_command = 'test ! -f $ARCH/%f && cp %p $ARCH/%f'
fsync = off
synchronous_commit = off
shared_buffers = 256MB
max_wal_size = 16GB
checkpoint_timeout = 1h
logging_collector = off
EOF
    as_pg "$PGBIN/pg_ctl" start -w -D "$WORK/primary" -l "$WORK/primary.log" >/dev/null

    log "building the standby"
    as_pg "$PGBIN/pg_basebackup" -D "$WORK/standby" -R -X stream -c fast -h "$WORK" -p "$P1" -U postgres
    cat >>"$WORK/standby/postgresql.auto.conf" <<EOF
port = $P2
restore_command = 'cp $ARCH/%f %p'
EOF
    as_pg "$PGBIN/pg_ctl" start -w -D "$WORK/standby" -l "$WORK/standby.log" >/dev/null

    log "pgbench -i -s $SCALE"
    as_pg "$PGBIN/pgbench" -i -q -s "$SCALE" -h "$WORK" -p "$P1" -U postgres postgres >/dev/null 2>&1
    while :; do
        mb=$(du -sm "$ARCH" | cut -f1)
        [ "$mb" -ge "$WAL_MB" ] && break
        log "archive holds $mb MiB of WAL; writing more"
        as_pg "$PGBIN/pgbench" -n -c 4 -j 2 -T 15 -h "$WORK" -p "$P1" -U postgres postgres >/dev/null 2>&1
        psql1 "$P1" "SELECT pg_switch_wal()" >/dev/null
        sleep 2
    done
    target=$(psql1 "$P1" "SELECT pg_current_wal_lsn()")
    log "waiting for the standby to replay up to $target"
    until [ "$(psql1 "$P2" "SELECT pg_last_wal_replay_lsn() >= '$target'::pg_lsn")" = t ]; do sleep 1; done
}
