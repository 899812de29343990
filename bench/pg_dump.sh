#!/usr/bin/env bash
# The database half of a Govern backup, measured: pg_dump compressing its own output with
# zlib (level 6, what `pg_dump -Fc` does when not told otherwise) against not compressing it
# (-Z0: holdfast compresses with zstd on every core and deduplicates between dumps), each
# through `holdfast backup --app` (compression = 6 or 0 in [[app.NAME.postgres]]) on the
# same database. See bench/README.md.
#
#   bench/pg_dump.sh [--rows N] [--out DIR] [--repeat N] [--changes N] [--updates N]
#
# --rows: rows of the `documents` table (default 6,000,000: 1.3 GiB dumped uncompressed;
#   each row an id, a timestamp, a status and a JSON-like text body of hex ids and numbers,
#   about 2.5x compressible, like a Govern node's item and history tables; pgbench's own
#   tables are mostly blank padding, which any compressor shrinks 100x and says nothing);
# --repeat: first backups per level, levels taking turns (default 3, the median reported);
# --changes: rows inserted between the first and the second backup (default 20,000: a day
#   on a Govern node); --updates: rows updated, spread evenly over the table (default: as
#   many as --changes).
# Needs root (the server runs as the postgres user) and PostgreSQL server binaries.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(dirname "$BENCH_DIR")
PG_SH="$REPO_ROOT/crates/holdfast/tests/fixtures/pg.sh"
ROWS=6000000
OUT="$BENCH_DIR/out-pg"
REPEAT=3
CHANGES=20000
UPDATES=""

log() { printf '[pg-bench %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[pg-bench] ERROR: %s\n' "$*" >&2; exit 1; }

while (($#)); do
    case "$1" in
        --rows) ROWS=${2:?}; shift 2 ;;
        --out) OUT=${2:?}; shift 2 ;;
        --repeat) REPEAT=${2:?}; shift 2 ;;
        --changes) CHANGES=${2:?}; shift 2 ;;
        --updates) UPDATES=${2:?}; shift 2 ;;
        -h | --help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
UPDATES=${UPDATES:-$CHANGES}
[[ $(id -u) -eq 0 ]] || die "run as root (the PostgreSQL server runs as the postgres user)"
[[ -x /usr/bin/time ]] || die "needs GNU time (apt-get install time)"

if [[ -n ${HOLDFAST_BIN:-} ]]; then
    HOLDFAST=$HOLDFAST_BIN
else
    log "building holdfast (cargo build --release -p holdfast)"
    (cd "$REPO_ROOT" && cargo build --release -q -p holdfast)
    HOLDFAST="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/holdfast"
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)
rm -rf "$OUT/repos" "$OUT/logs" "$OUT/app" "$OUT/results.tsv"
mkdir -p "$OUT/repos" "$OUT/logs" "$OUT/app/data"
echo "a small data directory; the database is what is measured" >"$OUT/app/data/README"
TSV="$OUT/results.tsv" # level phase wall user sys maxrss_kb stored_bytes
: >"$TSV"

"$PG_SH" stop "$OUT/pg" >/dev/null 2>&1 || true
trap '"$PG_SH" stop "$OUT/pg" >/dev/null 2>&1 || true' EXIT
log "starting a PostgreSQL server"
"$PG_SH" start "$OUT/pg" >/dev/null
URL=$(cat "$OUT/pg/url")
BINDIR=$(cat "$OUT/pg/bindir")
export PGPASSFILE="$OUT/pg/pgpass"
psql() { "$BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 -d "$URL" "$@"; }
# A row: "{"owner": "<md5>", "refs": ["<md5>", "<md5>"], "score": N, "note": "<md5 prefix>"}".
row_body="'{\"owner\": \"' || md5(g::text) || '\", \"refs\": [\"' || md5((g * 7)::text)
    || '\", \"' || md5((g * 13)::text) || '\"], \"score\": ' || (g * 7919 % 100000)
    || ', \"note\": \"' || left(md5((g * 31)::text), (20 + g % 12)::int) || '\"}'"
log "filling table documents with $ROWS rows"
psql -c "CREATE TABLE documents (id bigint PRIMARY KEY, created timestamptz, status text, body text)" \
    -c "INSERT INTO documents SELECT g, timestamptz '2026-01-01' + g * interval '1 second',
            (ARRAY['open', 'approved', 'archived'])[1 + g % 3], $row_body
        FROM generate_series(1::bigint, $ROWS) g" >"$OUT/logs/fill.log" 2>&1
db_bytes=$(psql -c "SELECT pg_database_size(current_database())")

config() { # config LEVEL -> path of a configuration backing up into repos/zLEVEL
    local level=$1 f="$OUT/app/z$1.toml"
    cat >"$f" <<EOF
repository = "$OUT/repos/z$level"
state_dir = "$OUT/app/state-z$level"

[app.govern]
profile = "generic"
data_dir = "$OUT/app/data"
consistency = "live"

[[app.govern.postgres]]
url = "$URL"
passfile = "$PGPASSFILE"
bin_dir = "$BINDIR"
compression = $level
EOF
    echo "$f"
}

timed() { # timed LEVEL PHASE CMD...
    local level=$1 phase=$2 tf="$OUT/logs/z$1.$2.time"
    shift 2
    sync
    /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$OUT/logs/z$level.$phase.log" 2>&1 \
        || { tail -n 20 "$OUT/logs/z$level.$phase.log" >&2; die "z$level $phase failed"; }
    local e u s m
    read -r e u s m <"$tf"
    local stored
    stored=$(du -sb "$OUT/repos/z$level" | cut -f1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$level" "$phase" "$e" "$u" "$s" "$m" "$stored" >>"$TSV"
    log "$(printf 'level %s %-7s %7ss wall %7ss CPU %5s MiB peak, repository %s MB' "$level" "$phase" \
        "$e" "$(awk -v u="$u" -v s="$s" 'BEGIN {print u + s}')" "$((m / 1024))" "$((stored / 1000000))")"
}

export HOLDFAST_PASSWORD=bench
for ((round = 1; round <= REPEAT; round++)); do
    for level in 6 0; do
        rm -rf "$OUT/repos/z$level" "$OUT/app/state-z$level"
        cfg=$(config $level)
        "$HOLDFAST" --config "$cfg" init >/dev/null
        timed $level first "$HOLDFAST" --config "$cfg" backup --app govern
    done
done
log "changes: $UPDATES rows updated, $CHANGES inserted"
psql -c "UPDATE documents SET status = 'reviewed', body = body || ' '
         WHERE id IN (SELECT (g * 104729) % $ROWS + 1 FROM generate_series(1::bigint, $UPDATES) g)" \
    -c "INSERT INTO documents SELECT g, timestamptz '2026-01-01' + g * interval '1 second', 'open',
            $row_body FROM generate_series($ROWS + 1::bigint, $ROWS + $CHANGES) g" >"$OUT/logs/change.log" 2>&1
for level in 6 0; do
    timed $level second "$HOLDFAST" --config "$(config $level)" backup --app govern
done

python3 - "$TSV" "$ROWS" "$db_bytes" "$REPEAT" "$CHANGES" "$UPDATES" <<'PY'
import sys
tsv, nrows, db_bytes, repeat, changes, updates = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(tsv) if l.strip()]
print(f"{int(nrows):,} rows: database {int(db_bytes) / 1e9:.2f} GB; first backups: median of "
      f"{repeat}, levels taking turns; then {int(updates):,} rows updated (spread over the table) "
      f"and {int(changes):,} inserted, and one more backup.")
print()
print("| pg_dump compression | first backup wall s | CPU s | peak MiB | stored MB | second backup wall s | added by the second MB |")
print("|---|---:|---:|---:|---:|---:|---:|")
for level in ("6", "0"):
    first = sorted((r for r in rows if r[0] == level and r[1] == "first"), key=lambda r: float(r[2]))
    m = first[len(first) // 2]
    second = next(r for r in rows if r[0] == level and r[1] == "second")
    before = [r for r in rows if r[0] == level and r[1] == "first"][-1]  # the same repository
    name = "-Z6 (zlib, pg_dump's default)" if level == "6" else "-Z0 (holdfast compresses)"
    print(f"| {name} | {float(m[2]):.1f} | {float(m[3]) + float(m[4]):.1f} | {int(m[5]) // 1024} | "
          f"{int(m[6]) / 1e6:.0f} | {float(second[2]):.1f} | {(int(second[6]) - int(before[6])) / 1e6:.1f} |")
runs = "; ".join(f"-Z{lv} " + " / ".join(r[2] for r in rows if r[0] == lv and r[1] == "first")
                 for lv in ("6", "0"))
print()
print(f"First backup runs, wall s: {runs}. CPU includes pg_dump's.")
PY
