# pgdrill task runner (https://just.systems). `just --list` shows the recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The PostgreSQL majors we test against (scripts/majors).
majors := `grep -v '^#' scripts/majors | awk '{print $1}' | tr '\n' ' '`
# The ones CI runs the integration tests on besides Debian's 15.
ci_majors := `grep -v '^#' scripts/majors | awk '$3 == "ci" {print $1}' | tr '\n' ' '`

# List the recipes.
default:
    @just --list

# Install PostgreSQL MAJOR (10..18) into .cache/pg/MAJOR; last line printed is the bindir.
pg MAJOR:
    scripts/pg-install.sh '{{MAJOR}}'

# Install every supported major.
pg-all:
    for m in {{majors}}; do scripts/pg-install.sh "$m"; done

# Regenerate testdata/ from real clusters of every major (installs them as needed).
testdata:
    scripts/gen-testdata.sh

# Print the bindir of PostgreSQL MAJOR (installing it if needed).
pg-bin MAJOR:
    @scripts/pg-install.sh '{{MAJOR}}' 2>/dev/null | tail -n 1

# Run the integration tests against the npm build of each MAJOR (default: all).
matrix *MAJORS:
    #!/usr/bin/env bash
    set -euo pipefail
    for m in {{ if MAJORS == "" { majors } else { MAJORS } }}; do
        bin=$(scripts/pg-install.sh "$m" 2>/dev/null | tail -n 1)
        echo "=== PostgreSQL $m ($bin)"
        PGDRILL_TEST_PG_BIN="$bin" cargo test --test it -q
    done

# Print the majors CI tests besides Debian's 15 (scripts/majors).
ci-majors:
    @echo {{ci_majors}}

# The integration tests whose behaviour depends on the major (CI runs them on
# the `ci` majors of scripts/majors; Debian's 15 runs the whole suite).
major_tests := "gate:: backup:: busy_standby:: targets:: verify:: inspect:: conn::"

# Run the major-dependent integration tests against the npm build of MAJOR.
it-major MAJOR:
    PGDRILL_TEST_PG_BIN="$(scripts/pg-install.sh '{{MAJOR}}' 2>/dev/null | tail -n 1)" cargo test --test it -- {{major_tests}}

# The checks CI runs, in order.
check:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings
    cargo test

# Fault injection (docs/faults.md): RUNS gated restores of label and legacy
# backups, each with one fault, under probes by three roles over TCP and the
# socket. Early admissions must be zero. Needs root.
faults RUNS="24":
    PGDRILL_FAULT_RUNS={{RUNS}} cargo test --test it faults:: -- --ignored --nocapture

# Benchmarks against reference tools (not tests): backup, gate, s3, s3-verify, verify, formats, or all.
# Figures go into docs/performance.md. Needs root and Debian's PostgreSQL 15.
bench WHAT="all" *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    case "{{WHAT}}" in
        backup|gate|s3|s3-verify) cargo bench --bench pgdrill -- {{WHAT}} {{ARGS}} ;;
        verify) scripts/bench-verify.sh {{ARGS}} ;;
        formats) scripts/bench-formats.sh {{ARGS}} ;;
        all) cargo bench --bench pgdrill -- backup gate s3 s3-verify {{ARGS}}; scripts/bench-verify.sh; scripts/bench-formats.sh ;;
        *) echo "usage: just bench [backup|gate|s3|s3-verify|verify|formats|all]" >&2; exit 2 ;;
    esac

# Mutation run of `pgdrill verify` over real backups (tests/it/fuzz_verify.rs): counts
# panics, aborts, hangs and missed corruptions, and fails unless all are zero.
# EXECS executions (CI runs 100 in the ordinary test suite); SEED to replay one.
fuzz EXECS="20000" SEED="":
    PGDRILL_FUZZ_EXECS={{EXECS}} {{ if SEED == "" { "" } else { "PGDRILL_FUZZ_SEED=" + SEED } }} cargo test --release --test it fuzz_verify:: -- --nocapture
