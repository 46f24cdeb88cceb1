#!/usr/bin/env bash
# Benchmark `pgdrill verify` against PostgreSQL 15's own tools.
#
# Usage:
#   scripts/bench-verify.sh                 # scale 70 (~1 GB of data), 5 runs each
#   SCALE=10 RUNS=5 scripts/bench-verify.sh # smaller / more runs
#   MANIFEST_FILES=500000 scripts/bench-verify.sh  # a smaller large manifest
#   KEEP=1 scripts/bench-verify.sh          # keep the work directory
#   BENCH_DIR=/big/disk/x scripts/bench-verify.sh
#
# What it does, self-contained (Debian's PostgreSQL 15 under
# /usr/lib/postgresql/15/bin, run as the `postgres` OS user when started as
# root; needs /usr/bin/time, `apt-get install time` if missing):
#   1. initdb a primary with data checksums (-k) that archives WAL into a
#      directory, and build a hot standby of it with pg_basebackup -R;
#   2. pgbench -i -s $SCALE on the primary (scale 70 is ~1 GB), then pgbench
#      writes until the archive holds >= $WAL_MB MiB of WAL; checkpoints are
#      held off so the standby's last restartpoint stays before all of it;
#   3. `pgdrill backup` (label method, release build) from the standby, so
#      that the backup's WAL range spans that WAL;
#   4. with both servers stopped, alternating runs, warm page cache, medians
#      of $RUNS:
#        A. pgdrill verify --no-wal BACKUP      vs  pg_verifybackup -n BACKUP
#           (manifest, every file's CRC-32C; pgdrill also scans page LSNs
#           and verifies every page's data checksum)
#        B. the WAL record walk alone: pgdrill verify on a copy holding only
#           backup_label, end_location and pg_control (no manifest, no
#           relation files), so it does nothing but walk the backup's WAL
#           range  vs  pg_waldump --stats and pg_waldump -q over the same
#           start..end range in the same archive
#        C. peak RSS (/usr/bin/time -v "Maximum resident set size") of a
#           full pgdrill verify --wal-archive
#        D. a large manifest: a directory of $MANIFEST_FILES (default 2
#           million) empty files plus pg_control and the label files, with a
#           manifest in PostgreSQL's layout listing them; the peak RSS of
#           pgdrill verify --no-wal on it against the manifest's size (and
#           pg_verifybackup -n's, for reference)
#   5. print a table with the targets: A >= 1.5x, B >= 2x, C <= 64 MB,
#      D <= the manifest's size plus 64 MiB;
#   6. stop the servers and remove everything (unless KEEP=1).
set -euo pipefail

SCALE=${SCALE:-70}
MANIFEST_FILES=${MANIFEST_FILES:-2000000}
RUNS=${RUNS:-5}
WAL_MB=${WAL_MB:-1100}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PGDRILL=${PGDRILL:-$ROOT/target/release/pgdrill}

for p in initdb pg_ctl pgbench pg_basebackup pg_verifybackup pg_waldump psql; do
    [ -x "$PGBIN/$p" ] || { echo "missing $PGBIN/$p (apt-get install postgresql-15)" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { echo "missing /usr/bin/time (apt-get install time)" >&2; exit 2; }

if [ -z "${PGDRILL_SKIP_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet)
fi

# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
bench_ground verify

log "pgdrill backup"
"$PGDRILL" backup --standby "host=$WORK port=$P2 user=postgres dbname=postgres" \
    --primary "host=$WORK port=$P1 user=postgres dbname=postgres" --wal-archive "$ARCH" \
    --dest "$WORK/backup" --fast --no-sync --json >"$WORK/backup.json" || { cat "$WORK/backup.json" >&2; exit 1; }

# The servers are not needed any more; stopped, they leave the cores alone.
as_pg "$PGBIN/pg_ctl" stop -m fast -D "$WORK/standby" >/dev/null
as_pg "$PGBIN/pg_ctl" stop -m fast -D "$WORK/primary" >/dev/null

# The WAL-only copy: what the walk needs and nothing else.
mkdir -p "$WORK/walonly/global" "$WORK/walonly/pg_wal"
cp "$WORK/backup/backup_label" "$WORK/backup/end_location" "$WORK/walonly/"
cp "$WORK/backup/global/pg_control" "$WORK/walonly/global/"
"$PGDRILL" verify "$WORK/walonly" --allow-missing-manifest --wal-archive "$ARCH" --json >"$WORK/walonly.json"
read -r START END <<<"$(python3 -c 'import json,sys; w=json.load(open(sys.argv[1]))["wal"]; print(w["start"], w["end"])' "$WORK/walonly.json")"
DATA_MB=$(du -sm "$WORK/backup" | cut -f1)
read -r SEGS WALBYTES RECORDS <<<"$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["checked"]; print(c["segments"], c["wal_bytes"], c["wal_records"])' "$WORK/walonly.json")"
log "backup: $DATA_MB MiB; WAL range $START .. $END: $SEGS segments, $((WALBYTES / 1048576)) MiB, $RECORDS records"
"$PGDRILL" verify "$WORK/backup" --wal-archive "$ARCH" >/dev/null || { echo "the backup does not verify" >&2; exit 1; }

# D's directory: the large manifest and its files.
log "a directory of $MANIFEST_FILES files and its manifest"
BIG=$WORK/big
mkdir -p "$BIG/global"
cp "$WORK/backup/backup_label" "$WORK/backup/end_location" "$BIG/"
cp "$WORK/backup/global/pg_control" "$BIG/global/"
python3 - "$BIG" "$MANIFEST_FILES" "$WORK/backup/backup_manifest" <<'PY'
import hashlib, json, os, sys
big, n, orig = sys.argv[1], int(sys.argv[2]), sys.argv[3]
text = open(orig).read()
m = json.loads(text)
keep = [l.rstrip(",") for l in text.splitlines()
        if any('"Path": "%s"' % p in l for p in ("backup_label", "end_location", "global/pg_control"))]
entries = list(keep)
for i in range(n):
    d = "base/%d" % (16384 + i // 10000)
    if i % 10000 == 0:
        os.makedirs(os.path.join(big, d), exist_ok=True)
    name = "%s/%d" % (d, 100000 + i)
    open(os.path.join(big, name), "wb").close()
    entries.append('{ "Path": "%s", "Size": 0, "Last-Modified": "2026-11-21 07:28:38 GMT", '
                   '"Checksum-Algorithm": "CRC32C", "Checksum": "00000000" }' % name)
ranges = ",\n".join('{ "Timeline": %d, "Start-LSN": "%s", "End-LSN": "%s" }'
                     % (r["Timeline"], r["Start-LSN"], r["End-LSN"]) for r in m["WAL-Ranges"])
body = ('{ "PostgreSQL-Backup-Manifest-Version": 1,\n"Files": [\n' + ",\n".join(entries)
        + '\n],\n"WAL-Ranges": [\n' + ranges + "\n],\n")
with open(os.path.join(big, "backup_manifest"), "w") as f:
    f.write(body + '"Manifest-Checksum": "%s"}\n' % hashlib.sha256(body.encode()).hexdigest())
PY
MANIFEST_MB=$(( $(stat -c %s "$BIG/backup_manifest") / 1048576 ))
"$PGDRILL" verify --no-wal "$BIG" >/dev/null || { echo "the large-manifest directory does not verify" >&2; exit 1; }

# Elapsed seconds and peak RSS (KiB) of a command; its output is discarded.
measure() {
    /usr/bin/time -f '%e %M' -o "$WORK/time.out" "$@" >/dev/null 2>&1 || true
    tail -n 1 "$WORK/time.out"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A T
run() { # name command...
    local name=$1; shift
    local r
    r=$(measure "$@")
    T[$name]+="${r%% *} "
    if [ "$name" = full ]; then RSS+="${r##* } "; fi
}
RSS=""
log "warming the page cache"
measure "$PGDRILL" verify --no-wal "$WORK/backup" >/dev/null
measure "$PGBIN/pg_verifybackup" -n "$WORK/backup" >/dev/null
measure "$PGBIN/pg_waldump" --stats -p "$ARCH" -s "$START" -e "$END" >/dev/null
for i in $(seq 1 "$RUNS"); do
    log "round $i of $RUNS"
    run pgdrill_nowal "$PGDRILL" verify --no-wal "$WORK/backup"
    run pg_verifybackup "$PGBIN/pg_verifybackup" -n "$WORK/backup"
    run pgdrill_wal "$PGDRILL" verify "$WORK/walonly" --allow-missing-manifest --wal-archive "$ARCH"
    run waldump_stats "$PGBIN/pg_waldump" --stats -p "$ARCH" -s "$START" -e "$END"
    run waldump_q "$PGBIN/pg_waldump" -q -p "$ARCH" -s "$START" -e "$END"
    run full "$PGDRILL" verify "$WORK/backup" --wal-archive "$ARCH"
done
log "the large manifest"
big=$(measure "$PGDRILL" verify --no-wal "$BIG")
big_pg=$(measure "$PGBIN/pg_verifybackup" -n "$BIG")
BIG_RSS=$(( ${big##* } / 1024 )); BIG_PG_RSS=$(( ${big_pg##* } / 1024 ))

m() { echo "${T[$1]}" | tr ' ' '\n' | grep -v '^$' | median; }
a=$(m pgdrill_nowal); b=$(m pg_verifybackup); c=$(m pgdrill_wal); d=$(m waldump_stats); e=$(m waldump_q); f=$(m full)
rss=$(echo "$RSS" | tr ' ' '\n' | grep -v '^$' | sort -g | tail -n 1)
wd=$(python3 -c "print(min($d, $e))")
cat <<EOF

pgdrill verify benchmark: $DATA_MB MiB backup (pgbench scale $SCALE), $((WALBYTES / 1048576)) MiB of WAL ($SEGS segments, $RECORDS records), $(nproc) cores, warm cache, medians of $RUNS
| measurement | pgdrill | PostgreSQL 15 | speed-up | target |
|---|---|---|---|---|
| files + checksums | verify --no-wal: ${a} s | pg_verifybackup -n: ${b} s | $(python3 -c "print(f'{$b/$a:.2f}x')") | >= 1.5x: $(python3 -c "print('met' if $b/$a >= 1.5 else 'MISSED')") |
| WAL record walk | verify (WAL only): ${c} s | pg_waldump --stats: ${d} s, -q: ${e} s | $(python3 -c "print(f'{$wd/$c:.2f}x')") (vs the faster) | >= 2x: $(python3 -c "print('met' if $wd/$c >= 2 else 'MISSED')") |
| peak RSS, full verify (${f} s) | $((rss / 1024)) MiB | | | <= 64 MiB: $( [ $((rss / 1024)) -le 64 ] && echo met || echo MISSED) |
| peak RSS, $MANIFEST_FILES-file manifest of ${MANIFEST_MB} MiB (${big%% *} s) | ${BIG_RSS} MiB | pg_verifybackup -n: ${BIG_PG_RSS} MiB (${big_pg%% *} s) | $(python3 -c "print(f'{$BIG_RSS/max($MANIFEST_MB,1):.2f}x the manifest')") | <= manifest + 64 MiB: $( [ "$BIG_RSS" -le $((MANIFEST_MB + 64)) ] && echo met || echo MISSED) |
EOF
