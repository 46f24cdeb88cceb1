#!/usr/bin/env bash
# Benchmark pgdrill on compressed WAL archives and tar backups against
# PostgreSQL 15's own tools (issue #12).
#
# Usage:
#   scripts/bench-formats.sh                 # scale 70 (~1 GB of data), 5 runs each
#   SCALE=20 WAL_MB=300 RUNS=3 scripts/bench-formats.sh
#   KEEP=1 scripts/bench-formats.sh          # keep the work directory
#   BENCH_DIR=/big/disk/x scripts/bench-formats.sh
#
# Self-contained, like bench-verify.sh (Debian's PostgreSQL 15 under
# /usr/lib/postgresql/15/bin, the postgres OS user as root; needs
# /usr/bin/time, zstd, gzip):
#   1. a primary with data checksums archiving into a directory, a hot
#      standby, pgbench -i -s $SCALE, then writes until the archive holds
#      >= $WAL_MB MiB; the standby is backed up (plain, by pgdrill) so the
#      backup's WAL range spans that WAL; gzip and zstd copies of the
#      archive are made with the command-line tools;
#   2. with the primary stopped, alternating runs, warm cache, medians of $RUNS:
#        A. verify of a zstd tar backup (pgdrill backup --format tar
#           --compress zstd): `pgdrill verify --no-wal DIR` vs extracting
#           it with zstd | tar into a directory, then `pg_verifybackup -n`
#        B. verify over a gzip and over a zstd archive: `pgdrill verify
#           BACKUP --wal-archive ARCH` vs decompressing the archive into a
#           directory, then `pg_verifybackup -w DIR BACKUP` (files and WAL)
#        C. peak RSS of the pgdrill verifies in A and B
#        D. with the standby running: `pgdrill backup --format tar
#           --compress zstd` vs `pg_basebackup -Ft -X none
#           --compress=client-zstd`, time and size
#   3. a table with the targets: A, B, D >= 1.5x, D's size <= pg_basebackup's,
#      C <= 64 MiB.
set -euo pipefail

SCALE=${SCALE:-70}
RUNS=${RUNS:-5}
WAL_MB=${WAL_MB:-1100}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PGDRILL=${PGDRILL:-$ROOT/target/release/pgdrill}

for p in initdb pg_ctl pgbench pg_basebackup pg_verifybackup psql; do
    [ -x "$PGBIN/$p" ] || { echo "missing $PGBIN/$p (apt-get install postgresql-15)" >&2; exit 2; }
done
for p in /usr/bin/time zstd gzip; do
    command -v "$p" >/dev/null || { echo "missing $p" >&2; exit 2; }
done
if [ -z "${PGDRILL_SKIP_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet)
fi

# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
bench_ground formats
STANDBY="host=$WORK port=$P2 user=postgres dbname=postgres"
PRIMARY="host=$WORK port=$P1 user=postgres dbname=postgres"
log "pgdrill backup (plain, for B)"
"$PGDRILL" backup --standby "$STANDBY" --primary "$PRIMARY" --wal-archive "$ARCH" \
    --dest "$WORK/backup" --fast --no-sync --json >"$WORK/backup.json"
log "pgdrill backup --format tar --compress zstd (for A)"
"$PGDRILL" backup --standby "$STANDBY" --dest "$WORK/tar" --fast --no-sync --format tar --compress zstd --json >/dev/null
"$PGDRILL" verify "$WORK/backup" --wal-archive "$ARCH" >/dev/null || { echo "the backup does not verify" >&2; exit 1; }

log "compressing the archive with gzip and zstd"
mkdir -p "$WORK/arch-gz" "$WORK/arch-zst"
(cd "$ARCH" && ls | grep -v '^\.' | xargs -P 2 -I{} sh -c 'gzip -c "{}" > "'"$WORK"'/arch-gz/{}.gz" && zstd -q -c "{}" > "'"$WORK"'/arch-zst/{}.zst"')

measure() {
    /usr/bin/time -f '%e %M' -o "$WORK/time.out" "$@" >/dev/null 2>&1 || true
    tail -n 1 "$WORK/time.out"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A T
declare -A R
run() { # name command...
    local name=$1; shift
    local r
    r=$(measure "$@")
    T[$name]+="${r%% *} "
    R[$name]+="${r##* } "
}
ref_tar() { # extract the zstd tar, then pg_verifybackup -n
    rm -rf "$WORK/x" && mkdir "$WORK/x"
    zstd -dc "$WORK/tar/base.tar.zst" | tar -xf - -C "$WORK/x"
    cp "$WORK/tar/backup_manifest" "$WORK/x/"
    "$PGBIN/pg_verifybackup" -n "$WORK/x"
}
ref_arch() { # $1: gz or zst: decompress the archive, then pg_verifybackup -w
    rm -rf "$WORK/w" && mkdir "$WORK/w"
    if [ "$1" = gz ]; then
        for f in "$WORK"/arch-gz/*.gz; do b=$(basename "$f" .gz); gzip -dc "$f" >"$WORK/w/$b"; done
    else
        for f in "$WORK"/arch-zst/*.zst; do b=$(basename "$f" .zst); zstd -q -dc "$f" >"$WORK/w/$b"; done
    fi
    "$PGBIN/pg_verifybackup" -w "$WORK/w" "$WORK/backup"
}
export -f ref_tar ref_arch
export WORK PGBIN

as_pg "$PGBIN/pg_ctl" stop -m fast -D "$WORK/primary" >/dev/null
log "warming the page cache"
measure "$PGDRILL" verify --no-wal "$WORK/tar" >/dev/null
measure bash -c ref_tar >/dev/null
for i in $(seq 1 "$RUNS"); do
    log "round $i of $RUNS"
    run tar_pgdrill "$PGDRILL" verify --no-wal "$WORK/tar"
    run tar_ref bash -c ref_tar
    run gz_pgdrill "$PGDRILL" verify "$WORK/backup" --wal-archive "$WORK/arch-gz"
    run gz_ref bash -c 'ref_arch gz'
    run zst_pgdrill "$PGDRILL" verify "$WORK/backup" --wal-archive "$WORK/arch-zst"
    run zst_ref bash -c 'ref_arch zst'
done
rm -rf "$WORK/x" "$WORK/w"

log "backups: pgdrill --format tar --compress zstd vs pg_basebackup -Ft --compress=client-zstd"
for i in $(seq 1 "$RUNS"); do
    rm -rf "$WORK/b1" "$WORK/b2"
    run bk_pgdrill "$PGDRILL" backup --standby "$STANDBY" --dest "$WORK/b1" --fast --no-sync --format tar --compress zstd
    S1=$(du -sb "$WORK/b1" | cut -f1)
    run bk_ref "$PGBIN/pg_basebackup" -D "$WORK/b2" -Ft -X none --compress=client-zstd -c fast --no-sync \
        -h "$WORK" -p "$P2" -U postgres
    S2=$(du -sb "$WORK/b2" | cut -f1)
done

m() { echo "${T[$1]}" | tr ' ' '\n' | grep -v '^$' | median; }
peak() { echo "${R[$1]}" | tr ' ' '\n' | grep -v '^$' | sort -g | tail -n 1; }
ratio() { python3 -c "print(f'{$2/$1:.2f}x')"; }
met() { python3 -c "print('met' if $2/$1 >= 1.5 else 'MISSED')"; }
DATA_MB=$(du -sm "$WORK/backup" | cut -f1)
WAL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["wal_ranges"])' "$WORK/backup.json")
rss=$(( $(printf '%s\n' "$(peak tar_pgdrill)" "$(peak gz_pgdrill)" "$(peak zst_pgdrill)" | sort -g | tail -n 1) / 1024 ))
cat <<EOF

pgdrill formats benchmark: $DATA_MB MiB backup (pgbench scale $SCALE, data checksums), WAL $WAL, archive $(du -sm "$ARCH" | cut -f1) MiB (gzip $(du -sm "$WORK/arch-gz" | cut -f1) MiB, zstd $(du -sm "$WORK/arch-zst" | cut -f1) MiB), $(nproc) cores, warm cache, medians of $RUNS
| measurement | pgdrill | PostgreSQL 15 and the usual tools | speed-up | target |
|---|---|---|---|---|
| verify a zstd tar backup | verify --no-wal DIR: $(m tar_pgdrill) s | zstd -dc \| tar -x, pg_verifybackup -n: $(m tar_ref) s | $(ratio "$(m tar_pgdrill)" "$(m tar_ref)") | >= 1.5x: $(met "$(m tar_pgdrill)" "$(m tar_ref)") |
| verify over a gzip archive | verify --wal-archive: $(m gz_pgdrill) s | gunzip into a directory, pg_verifybackup -w: $(m gz_ref) s | $(ratio "$(m gz_pgdrill)" "$(m gz_ref)") | >= 1.5x: $(met "$(m gz_pgdrill)" "$(m gz_ref)") |
| verify over a zstd archive | verify --wal-archive: $(m zst_pgdrill) s | zstd -d into a directory, pg_verifybackup -w: $(m zst_ref) s | $(ratio "$(m zst_pgdrill)" "$(m zst_ref)") | >= 1.5x: $(met "$(m zst_pgdrill)" "$(m zst_ref)") |
| peak RSS of those verifies | $rss MiB | | | <= 64 MiB: $( [ "$rss" -le 64 ] && echo met || echo MISSED) |
| backup, tar + zstd | --format tar --compress zstd: $(m bk_pgdrill) s, $((S1 / 1048576)) MiB | pg_basebackup -Ft -X none --compress=client-zstd: $(m bk_ref) s, $((S2 / 1048576)) MiB | $(ratio "$(m bk_pgdrill)" "$(m bk_ref)") | >= 1.5x: $(met "$(m bk_pgdrill)" "$(m bk_ref)"), size <=: $( [ "$S1" -le "$S2" ] && echo met || echo MISSED) |
EOF
