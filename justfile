# pgdrill task runner (https://just.systems). `just --list` shows the recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The PostgreSQL majors we test against.
majors := "10 11 12 13 14 15 16 17 18"

# List the recipes.
default:
    @just --list

# Install PostgreSQL MAJOR (10..18) into .cache/pg/MAJOR; last line printed is the bindir.
pg MAJOR:
    scripts/pg-install.sh '{{MAJOR}}'

# Install every supported major (10..18).
pg-all:
    for m in {{majors}}; do scripts/pg-install.sh "$m"; done

# Regenerate testdata/ from real clusters of every major (installs them as needed).
testdata:
    scripts/gen-testdata.sh
