#!/usr/bin/env bash
# Regenerate the real PostgreSQL sample files under testdata/{control,label,wal}
# from throw-away clusters of every major 10..18 (npm builds, see
# scripts/pg-install.sh). Re-runnable: everything is generated into a staging
# directory first and swapped in only when all clusters succeeded.
#
# Usage: scripts/gen-testdata.sh          (or: just testdata)
#
# Needs: node+npm (to install the servers), python3, and a psql client
# (PSQL=..., default: Debian's psql 15, which talks to every major).
# When run as root, the clusters run as the `postgres` OS user.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
read -r -a MAJORS <<< "$(grep -v '^#' "$(dirname "$0")/majors" | awk '{print $1}' | tr '\n' ' ')"
LABEL=pgdrill-testdata
TESTDATA=$REPO/testdata
HELPER=$REPO/scripts/testdata.py

log() { echo "gen-testdata: $*" >&2; }
die() { echo "gen-testdata: error: $*" >&2; exit 1; }

if [[ -z ${PSQL:-} ]]; then
  for p in /usr/lib/postgresql/15/bin/psql "$(command -v psql || true)"; do
    [[ -n $p && -x $p ]] && { PSQL=$p; break; }
  done
fi
[[ -n ${PSQL:-} ]] || die "no psql found (apt-get install postgresql-client, or set PSQL=)"
command -v python3 >/dev/null || die "python3 not found"

if [[ $(id -u) -eq 0 ]]; then
  id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' OS user"
  RUN_AS=(runuser -u postgres --)
  PG_OWNER=postgres
else
  RUN_AS=()
  PG_OWNER=$(id -un)
fi

# State of the cluster currently running, for the cleanup trap.
CUR_BINDIR= CUR_TMP= CUR_PGDATA=

# Run a server-side command as the cluster owner, from inside the temp dir,
# in UTC so that log_timezone (used for the label's START TIME) is UTC.
as_pg() { (cd "$CUR_TMP" && env TZ=UTC LC_ALL=C "${RUN_AS[@]}" "$@"); }

stop_cluster() {
  if [[ -n $CUR_PGDATA && -f $CUR_PGDATA/postmaster.pid ]]; then
    as_pg "$CUR_BINDIR/pg_ctl" -D "$CUR_PGDATA" -m fast -w stop >&2 || true
  fi
  if [[ -n $CUR_TMP ]]; then
    rm -rf "$CUR_TMP"
  fi
  CUR_BINDIR= CUR_TMP= CUR_PGDATA=
}

on_exit() {
  local rc=$?
  if [[ $rc -ne 0 && -n $CUR_TMP && -f $CUR_TMP/server.log ]]; then
    log "server log:"; tail -n 30 "$CUR_TMP/server.log" >&2 || true
  fi
  stop_cluster
  [[ -n ${STAGE:-} ]] && rm -rf "$STAGE"
  exit $rc
}
trap on_exit EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

q() { "$PSQL" -X -A -t -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d postgres "$@"; }

# One JSON object with everything server.json needs (read from pg_control on disk).
SNAPSHOT_SQL="select json_build_object(
  'server_version_num', current_setting('server_version_num'),
  'version', version(),
  'wal_segment_size_setting', (select setting from pg_settings where name = 'wal_segment_size'),
  'wal_segment_size_unit', (select unit from pg_settings where name = 'wal_segment_size'),
  'block_size', current_setting('block_size'),
  'data_checksums', current_setting('data_checksums'),
  'pg_control_system', (select row_to_json(t) from pg_control_system() t),
  'pg_control_checkpoint', (select row_to_json(t) from pg_control_checkpoint() t),
  'pg_control_init', (select row_to_json(t) from pg_control_init() t),
  'pg_control_recovery', (select row_to_json(t) from pg_control_recovery() t),
  'unix_times', json_build_object(
     'checkpoint_time', (select extract(epoch from checkpoint_time)::bigint from pg_control_checkpoint()),
     'pg_control_last_modified', (select extract(epoch from pg_control_last_modified)::bigint from pg_control_system())))"

# start_cluster MAJOR [initdb args...]: initdb + start; sets SOCK, PORT.
start_cluster() {
  local major=$1; shift
  CUR_BINDIR=$("$REPO/scripts/pg-install.sh" "$major" | tail -n 1)
  [[ -x $CUR_BINDIR/postgres ]] || die "pg-install.sh $major gave no usable bindir"
  CUR_TMP=$(mktemp -d /tmp/pgdrill-testdata.XXXXXX)
  chown "$PG_OWNER" "$CUR_TMP"
  chmod 700 "$CUR_TMP"
  CUR_PGDATA=$CUR_TMP/data
  SOCK=$CUR_TMP/sock
  PORT=$(free_port)
  as_pg mkdir -m 700 "$SOCK" "$CUR_TMP/tblspc"
  as_pg "$CUR_BINDIR/initdb" -D "$CUR_PGDATA" -A trust -U postgres \
    -E UTF8 --locale=C "$@" >"$CUR_TMP/initdb.log" 2>&1 \
    || { cat "$CUR_TMP/initdb.log" >&2; die "initdb failed (PostgreSQL $major)"; }
  as_pg "$CUR_BINDIR/pg_ctl" -D "$CUR_PGDATA" -l "$CUR_TMP/server.log" \
    -o "-p $PORT -k $SOCK -c listen_addresses=''" -w start >&2
  q -c 'select 1' >/dev/null
}

# snapshot_control OUTDIR MAJOR: server.json + pg_control that agree.
snapshot_control() {
  local out=$1 major=$2 a b i
  mkdir -p "$out"
  for i in 1 2 3 4 5 6 7 8 9 10; do
    a=$(q -c "$SNAPSHOT_SQL")
    cp "$CUR_PGDATA/global/pg_control" "$out/pg_control"
    b=$(q -c "$SNAPSHOT_SQL")
    if [[ $a == "$b" ]]; then
      printf '%s\n' "$a" >"$CUR_TMP/snapshot.json"
      python3 "$HELPER" server-json "$CUR_TMP/snapshot.json" "$major" "$out/server.json"
      return 0
    fi
    log "pg_control changed while copying it (try $i), retrying"
    sleep 1
  done
  die "could not get a stable pg_control snapshot"
}

# take_backup MAJOR LABELDIR: non-exclusive backup in one session; writes
# backup_label and tablespace_map byte-exact (transferred hex-encoded). The
# server says which backup functions it has (pg_backup_start from 15 on),
# so no version rule lives here (the version table's backup_start_fn).
take_backup() {
  local major=$1 out=$2 start stop res
  if [ "$(q -c "select to_regproc('pg_catalog.pg_backup_start') is null")" = t ]; then
    start="select pg_start_backup('$LABEL', true, false);"
    stop="select labelfile, spcmapfile from pg_stop_backup(false, false)"
  else
    start="select pg_backup_start('$LABEL', true);"
    stop="select labelfile, spcmapfile from pg_backup_stop(false)"
  fi
  res=$(q <<SQL
\\o /dev/null
$start
-- Some WAL between start and stop, so that the first pages of the start
-- segment hold records (and records continued across page boundaries).
create table pgdrill_fill as
  select g as id, repeat('x', 100) as pad from generate_series(1, 1000) g;
\\o
select encode(convert_to(labelfile, 'UTF8'), 'hex') || ' ' ||
       encode(convert_to(coalesce(spcmapfile, ''), 'UTF8'), 'hex')
  from ($stop) s;
SQL
)
  mkdir -p "$out"
  python3 "$HELPER" hexfile "${res%% *}" "$out/backup_label"
  python3 "$HELPER" hexfile "${res#* }" "$out/tablespace_map"
  [[ -s $out/backup_label ]] || die "empty backup_label"
  [[ -s $out/tablespace_map ]] || die "empty tablespace_map"
}

# gen_major MAJOR: all outputs for one major.
gen_major() {
  local major=$1 seg
  log "=== PostgreSQL $major"
  start_cluster "$major"
  q -c "create tablespace pgdrill_ts location '$CUR_TMP/tblspc'"
  take_backup "$major" "$STAGE/label/pg$major"
  # After the backup nothing runs, so pg_control's latest checkpoint is the
  # one the backup started from (CHECKPOINT LOCATION in backup_label).
  snapshot_control "$STAGE/control/pg$major" "$major"
  seg=$(sed -n 's/^START WAL LOCATION: .* (file \([0-9A-F]\{24\}\))$/\1/p' \
          "$STAGE/label/pg$major/backup_label")
  [[ ${#seg} -eq 24 ]] || die "no START WAL LOCATION file in backup_label"
  mkdir -p "$STAGE/wal/pg$major"
  head -c 32768 "$CUR_PGDATA/pg_wal/$seg" >"$STAGE/wal/pg$major/$seg.head"
  [[ $(stat -c %s "$STAGE/wal/pg$major/$seg.head") -eq 32768 ]] || die "short WAL segment $seg"
  python3 "$HELPER" wal-info "$major" "$STAGE/control/pg$major/server.json" "$seg" \
    "$STAGE/wal/pg$major/info.json"
  stop_cluster
}

write_malformed_readme() {
  cat >"$1/README.md" <<'EOF'
# Malformed pg_control samples

All derived from `../pg15/pg_control` (PostgreSQL 15, pg_control_version 1300,
8192 bytes, CRC-32C of bytes [0,288) stored as u32 little-endian at offset 288)
by `scripts/testdata.py malformed` (run from `scripts/gen-testdata.sh`).

| file              | what it is                                                                 |
|-------------------|----------------------------------------------------------------------------|
| `truncated`       | only the first 100 bytes (shorter than the CRC offset)                     |
| `flipped-byte`    | byte at offset 40 XOR 0x01, CRC left unchanged, so the CRC no longer matches |
| `unknown-version` | pg_control_version (u32 LE at offset 8) set to 9999, nothing else changed (CRC now mismatches too) |
| `wrong-endian`    | the 4 bytes of pg_control_version at offset 8 byte-swapped (1300 stored big-endian), nothing else changed |
| `empty`           | 0 bytes                                                                    |
EOF
}

mkdir -p "$REPO/.cache"
STAGE=$(mktemp -d "$REPO/.cache/testdata-stage.XXXXXX")

for m in "${MAJORS[@]}"; do
  gen_major "$m"
done

# Non-default WAL segment size (PostgreSQL 11+; 10 only had it at compile time).
log "=== PostgreSQL 16 with --wal-segsize=64"
start_cluster 16 --wal-segsize=64
snapshot_control "$STAGE/control/pg16-seg64" 16
stop_cluster

python3 "$HELPER" malformed "$STAGE/control/pg15/pg_control" "$STAGE/control/malformed"
write_malformed_readme "$STAGE/control/malformed"

python3 "$HELPER" check "$STAGE" >&2

# Swap the new files in.
for d in control label wal; do
  rm -rf "${TESTDATA:?}/$d"
  mkdir -p "$TESTDATA"
  mv "$STAGE/$d" "$TESTDATA/$d"
done
chmod -R a+rX "$TESTDATA"
log "done: testdata/{control,label,wal} regenerated"
