#!/usr/bin/env bash
# shellcheck disable=SC2016 # single-quoted 'bash -c' scripts get their arguments as $1, $2
# Backup benchmark: holdfast vs restic, borg, rustic, tar+gzip and tar+zstd on a generated
# Dataiku-DSS-like DATA_DIR, and holdfast vs restic on a local S3 server. See bench/README.md.
#
#   bench/run.sh [--set dss|many-files|large-file] [--scale S] [--files N] [--size-mib M]
#                [--out DIR] [--seed N] [--percent P] [--repeat N] [--keep-restores]
#                [--restore-fs fresh|same]
#                [--tools "holdfast restic borg rustic tar-gzip tar-zstd holdfast-s3 restic-s3"]
#
# Order: generate data once; first backups, N rounds of every tool in turn, each into a fresh
# repository (the median is reported); for every tool: no-change backup; then (dss set only)
# mutate the data once (gen_data.py --mutate) and make an after-change backup; then N rounds
# of full restores of the latest backup, tools in turn, each into a fresh directory (the
# first one verified).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(dirname "$BENCH_DIR")
ALL_TOOLS="holdfast restic borg rustic tar-gzip tar-zstd holdfast-s3 restic-s3"

SET=dss
SCALE=1.0
FILES=1000000
SIZE_MIB=2048
SEED=42
PERCENT=1
OUT="$BENCH_DIR/out"
TOOLS="$ALL_TOOLS"
KEEP_RESTORES=0
RESTORE_FS=""
REPEAT=3

usage() {
    sed -n '3,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
warn() { printf '[bench %s] WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

while (($#)); do
    case "$1" in
        --set) SET=${2:?--set needs a value}; shift 2 ;;
        --set=*) SET=${1#*=}; shift ;;
        --files) FILES=${2:?--files needs a value}; shift 2 ;;
        --files=*) FILES=${1#*=}; shift ;;
        --size-mib) SIZE_MIB=${2:?--size-mib needs a value}; shift 2 ;;
        --size-mib=*) SIZE_MIB=${1#*=}; shift ;;
        --scale) SCALE=${2:?--scale needs a value}; shift 2 ;;
        --repeat) REPEAT=${2:?--repeat needs a value}; shift 2 ;;
        --repeat=*) REPEAT=${1#*=}; shift ;;
        --scale=*) SCALE=${1#*=}; shift ;;
        --out) OUT=${2:?--out needs a value}; shift 2 ;;
        --out=*) OUT=${1#*=}; shift ;;
        --tools) TOOLS=${2:?--tools needs a value}; shift 2 ;;
        --tools=*) TOOLS=${1#*=}; shift ;;
        --seed) SEED=${2:?--seed needs a value}; shift 2 ;;
        --seed=*) SEED=${1#*=}; shift ;;
        --percent) PERCENT=${2:?--percent needs a value}; shift 2 ;;
        --percent=*) PERCENT=${1#*=}; shift ;;
        --keep-restores) KEEP_RESTORES=1; shift ;;
        --restore-fs) RESTORE_FS=${2:?--restore-fs needs fresh or same}; shift 2 ;;
        --restore-fs=*) RESTORE_FS=${1#*=}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

case $SET in
    dss) MARKER=dss-version.json ;;
    many-files) MARKER=project-0000 ;;
    large-file) MARKER=database.sql ;;
    *) die "unknown --set '$SET' (known: dss many-files large-file)" ;;
esac
# Restores go into a freshly made ext4 file system each (a loop device; needs root), unless
# --restore-fs same: on one file system, every restore inherits the inode allocator's state
# from the deletions before it, and later tools pay for earlier ones (measured: the same
# restore went from 4 s to 23 s within one run).
if [[ -z $RESTORE_FS ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v mkfs.ext4 >/dev/null && command -v losetup >/dev/null; then
        RESTORE_FS=fresh
    else
        RESTORE_FS=same
    fi
fi
[[ $RESTORE_FS == fresh || $RESTORE_FS == same ]] || die "--restore-fs is fresh or same, not '$RESTORE_FS'"
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "--repeat needs a whole number of at least 1, not '$REPEAT'"
read -r -a REQUESTED <<<"$TOOLS"
((${#REQUESTED[@]})) || die "--tools is empty"
for t in "${REQUESTED[@]}"; do
    case " $ALL_TOOLS " in *" $t "*) ;; *) die "unknown tool '$t' (known: $ALL_TOOLS)" ;; esac
done
wants() { case " ${REQUESTED[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)
DATA="$OUT/data"
LOGS="$OUT/logs"
TSV="$OUT/results.tsv"     # tool phase wall user sys maxrss_kb exit
SIZES="$OUT/sizes.tsv"     # tool after-phase bytes
VERIFY="$OUT/verify.tsv"   # tool status detail
META="$OUT/meta.tsv"       # key value
declare -a NOTES=()
declare -A SKIP=()          # tool -> reason (never ran)
declare -A FAILED=()        # tool -> phase that failed

# ---------------------------------------------------------------------------------------
# dependencies (Debian packages; installed only when missing)

missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
[[ -x /usr/bin/time ]] || missing+=(time)
need_cmd python3 python3
need_cmd tar tar
need_cmd diff diffutils
{ wants restic || wants restic-s3; } && need_cmd restic restic
wants borg && need_cmd borg borgbackup
wants tar-gzip && need_cmd gzip gzip
wants tar-zstd && need_cmd zstd zstd
if ((${#missing[@]})); then
    [[ $(id -u) -eq 0 ]] || die "missing packages: ${missing[*]} (install them, or run as root)"
    command -v apt-get >/dev/null || die "missing packages: ${missing[*]} and no apt-get"
    log "installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# rough disk need: data + one restore + repositories/archives, ~8x the data (1.1 GB per scale unit)
case $SET in
    dss) need_kb=$(awk -v s="$SCALE" 'BEGIN {printf "%d", s * 1.1e9 * 8 / 1024}') ;;
    many-files) need_kb=$((FILES * 8 * 4)) ;;
    large-file) need_kb=$((SIZE_MIB * 1024 * 9 / 8 * 8)) ;;
esac
avail_kb=$(df -Pk "$OUT" | awk 'NR == 2 {print $4}')
if ((avail_kb < need_kb)); then
    warn "only $((avail_kb / 1024)) MiB free in $OUT; this run may need about $((need_kb / 1024)) MiB"
fi

# clean previous results (only the subdirectories this script owns)
rm -rf "$DATA" "$OUT/repos" "$OUT/tar" "$OUT/restore" "$OUT/cache" "$OUT/s3" "$LOGS" \
    "$OUT/results.md" "$OUT/results.json" "$TSV" "$SIZES" "$VERIFY" "$META"
mkdir -p "$LOGS" "$OUT/repos" "$OUT/tar" "$OUT/restore" "$OUT/cache"
: >"$TSV"
: >"$SIZES"
: >"$VERIFY"
: >"$META"

if wants rustic && ! command -v rustic >/dev/null 2>&1; then
    SKIP[rustic]="not on PATH (install it from https://rustic.cli.rs to include it)"
fi

# The S3 runs use s3s-fs (real SigV4, objects on disk) on a free loopback port, the server the
# test suite uses; its disk is the same as the local repositories', so the difference between
# tool and tool-s3 is the cost of the S3 protocol and the tool's request pattern.
S3_PORT=""
S3_PID=""
if wants holdfast-s3 || wants restic-s3; then
    if ! command -v s3s-fs >/dev/null 2>&1 && command -v cargo >/dev/null 2>&1; then
        log "installing s3s-fs 0.14.1 (cargo install, about 2 minutes)"
        cargo install s3s-fs --version 0.14.1 --features binary --locked >"$LOGS/s3s-fs.install.log" 2>&1 \
            || warn "cargo install s3s-fs failed; see $LOGS/s3s-fs.install.log"
        PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
    if ! command -v s3s-fs >/dev/null 2>&1; then
        for t in holdfast-s3 restic-s3; do
            SKIP[$t]="s3s-fs not on PATH (cargo install s3s-fs --version 0.14.1 --features binary --locked)"
        done
    else
        mkdir -p "$OUT/s3/bench"
        S3_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        s3s-fs --host 127.0.0.1 --port "$S3_PORT" --access-key bench --secret-key benchsecret \
            "$OUT/s3" >"$LOGS/s3s-fs.log" 2>&1 &
        S3_PID=$!
        trap '[[ -n $S3_PID ]] && kill "$S3_PID" 2>/dev/null || true' EXIT
        for _ in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null && break
            sleep 0.1
        done
        # plain HTTP on loopback: a CA bundle from the environment only confuses clients
        unset AWS_CA_BUNDLE
        export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1
    fi
fi

HOLDFAST=""
if wants holdfast || wants holdfast-s3; then
    if [[ -n ${HOLDFAST_BIN:-} ]]; then
        [[ -x $HOLDFAST_BIN ]] || die "HOLDFAST_BIN=$HOLDFAST_BIN is not an executable"
        HOLDFAST=$HOLDFAST_BIN
    elif ! command -v cargo >/dev/null 2>&1; then
        SKIP[holdfast]="cargo not found and HOLDFAST_BIN unset"
    else
        log "building holdfast (cargo build --release -p holdfast), log: $LOGS/holdfast.build.log"
        if (cd "$REPO_ROOT" && cargo build --release -p holdfast) >"$LOGS/holdfast.build.log" 2>&1; then
            HOLDFAST="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/holdfast"
            [[ -x $HOLDFAST ]] || { SKIP[holdfast]="build succeeded but $HOLDFAST is missing"; HOLDFAST=""; }
        else
            tail -n 20 "$LOGS/holdfast.build.log" >&2 || true
            SKIP[holdfast]="cargo build failed (see logs/holdfast.build.log); set HOLDFAST_BIN to use a prebuilt binary"
        fi
    fi
    [[ -n $HOLDFAST || -n ${SKIP[holdfast-s3]:-} ]] || SKIP[holdfast-s3]=${SKIP[holdfast]}
fi

TOOLS_RUN=()
for t in "${REQUESTED[@]}"; do
    if [[ -n ${SKIP[$t]:-} ]]; then
        warn "skipping $t: ${SKIP[$t]}"
        NOTES+=("$t skipped: ${SKIP[$t]}")
    else
        TOOLS_RUN+=("$t")
    fi
done
((${#TOOLS_RUN[@]})) || die "no tool left to benchmark"

# ---------------------------------------------------------------------------------------
# helpers

meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }

data_stats() { # prints "bytes files"
    find "$DATA" -type f -printf '%s\n' | awk '{s += $1; n++} END {printf "%d %d\n", s, n}'
}

warm_cache() { # read the whole data set once so every timed run starts with a warm page cache
    find "$DATA" -type f -print0 | xargs -0 -r cat >/dev/null
}

repo_dir() { echo "$OUT/repos/$1"; }

stored_bytes() {
    case "$1" in
        tar-gzip) find "$OUT/tar" -name 'backup-*.tar.gz' -printf '%s\n' | awk '{s += $1} END {print s + 0}' ;;
        tar-zstd) find "$OUT/tar" -name 'backup-*.tar.zst' -printf '%s\n' | awk '{s += $1} END {print s + 0}' ;;
        *-s3) du -sb "$OUT/s3/bench/$1" | cut -f1 ;;
        *) du -sb "$(repo_dir "$1")" | cut -f1 ;;
    esac
}

# run_timed TOOL PHASE CMD... : /usr/bin/time around CMD, output in logs/TOOL.PHASE.log
run_timed() {
    local tool=$1 phase=$2
    shift 2
    local tf="$LOGS/$tool.$phase.time" lf="$LOGS/$tool.$phase.log" rc=0
    local e=NA u=NA s=NA m=NA
    sync
    /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$lf" 2>&1 || rc=$?
    if [[ -s $tf ]]; then read -r e u s m < <(tail -n 1 "$tf") || true; fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$phase" "$e" "$u" "$s" "$m" "$rc" >>"$TSV"
    if ((rc != 0)); then
        warn "$tool $phase failed (exit $rc); last lines of $lf:"
        tail -n 15 "$lf" >&2 || true
        FAILED[$tool]=$phase
        return 1
    fi
    [[ $m =~ ^[0-9]+$ ]] && m=$((m / 1024))
    log "$(printf '%-9s %-8s %8ss wall %8ss user %8ss sys %7s MiB peak' "$tool" "$phase" \
        "$e" "$u" "$s" "$m")"
}

# tool_cmd TOOL ACTION [ARG] : sets CMD to the command line for ACTION (init|backup N|restore DIR)
tool_cmd() {
    local tool=$1 action=$2 arg=${3:-}
    local repo cache
    repo=$(repo_dir "$tool")
    cache="$OUT/cache/$tool"
    case "$tool:$action" in
        holdfast:*)
            local hf_env=(env "HOLDFAST_REPO=$repo" HOLDFAST_PASSWORD=bench "HOLDFAST_CACHE_DIR=$cache")
            case $action in
                init) CMD=("${hf_env[@]}" "$HOLDFAST" init) ;;
                backup) CMD=("${hf_env[@]}" "$HOLDFAST" backup "$DATA") ;;
                restore) CMD=("${hf_env[@]}" "$HOLDFAST" restore latest --target "$arg") ;;
            esac ;;
        holdfast-s3:*)
            local hs_env=(env "HOLDFAST_REPO=s3://bench/$tool" HOLDFAST_PASSWORD=bench
                "HOLDFAST_CACHE_DIR=$cache" "HOLDFAST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT")
            case $action in
                init) CMD=("${hs_env[@]}" "$HOLDFAST" init) ;;
                backup) CMD=("${hs_env[@]}" "$HOLDFAST" backup "$DATA") ;;
                restore) CMD=("${hs_env[@]}" "$HOLDFAST" restore latest --target "$arg") ;;
            esac ;;
        restic-s3:*)
            local rs_env=(env RESTIC_PASSWORD=bench "RESTIC_CACHE_DIR=$cache")
            local rs_repo="s3:http://127.0.0.1:$S3_PORT/bench/$tool"
            case $action in
                init) CMD=("${rs_env[@]}" restic -r "$rs_repo" init) ;;
                backup) CMD=("${rs_env[@]}" restic -r "$rs_repo" backup "$DATA") ;;
                restore) CMD=("${rs_env[@]}" restic -r "$rs_repo" restore latest --target "$arg") ;;
            esac ;;
        restic:*)
            local r_env=(env RESTIC_PASSWORD=bench "RESTIC_CACHE_DIR=$cache")
            case $action in
                init) CMD=("${r_env[@]}" restic -r "$repo" init) ;;
                backup) CMD=("${r_env[@]}" restic -r "$repo" backup "$DATA") ;;
                restore) CMD=("${r_env[@]}" restic -r "$repo" restore latest --target "$arg") ;;
            esac ;;
        borg:*)
            local b_env=(env BORG_PASSPHRASE=bench "BORG_BASE_DIR=$cache"
                BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes)
            case $action in
                init) CMD=("${b_env[@]}" borg init -e repokey-blake2 "$repo") ;;
                backup) CMD=("${b_env[@]}" borg create --compression "zstd,3" "$repo::a$arg" "$DATA") ;;
                restore) CMD=("${b_env[@]}" bash -c 'cd "$1" && exec borg extract "$2"' borg-extract \
                    "$arg" "$repo::a$LAST") ;;
            esac ;;
        rustic:*)
            local u_env=(env RUSTIC_PASSWORD=bench "RUSTIC_CACHE_DIR=$cache")
            case $action in
                init) CMD=("${u_env[@]}" rustic -r "$repo" init) ;;
                backup) CMD=("${u_env[@]}" rustic -r "$repo" backup "$DATA") ;;
                restore) CMD=("${u_env[@]}" rustic -r "$repo" restore latest "$arg") ;;
            esac ;;
        tar-gzip:init | tar-zstd:init) CMD=(true) ;;
        tar-gzip:backup)
            CMD=(bash -c 'set -o pipefail; tar -cpf - -C "$1" . | gzip -9 > "$2"' tar-gzip \
                "$DATA" "$OUT/tar/backup-$arg.tar.gz") ;;
        tar-gzip:restore) CMD=(tar -xpzf "$OUT/tar/backup-$LAST.tar.gz" -C "$arg") ;;
        tar-zstd:backup)
            CMD=(bash -c 'set -o pipefail; tar -cpf - -C "$1" . | zstd -3 -T0 -q -o "$2"' tar-zstd \
                "$DATA" "$OUT/tar/backup-$arg.tar.zst") ;;
        tar-zstd:restore)
            CMD=(bash -c 'set -o pipefail; zstd -dc "$1" | tar -xpf - -C "$2"' tar-zstd-x \
                "$OUT/tar/backup-$LAST.tar.zst" "$arg") ;;
        *) die "internal: no command for $tool $action" ;;
    esac
}

step() { # step TOOL PHASE ACTION [ARG]
    local tool=$1 phase=$2 action=$3 arg=${4:-}
    [[ -z ${FAILED[$tool]:-} ]] || return 1
    CMD=()
    tool_cmd "$tool" "$action" "$arg"
    run_timed "$tool" "$phase" "${CMD[@]}"
}

# metadata listing used to check a restore: type, mode, size, mtime (files), link target
meta_list() {
    (cd "$1" && find . -mindepth 1 \( -type f -printf '%p f %m %s %T@\n' \) -o \
        \( -type d -printf '%p d %m\n' \) -o \( -type l -printf '%p l %l\n' \) -o \
        -printf '%p other %y %m\n') | LC_ALL=C sort
}

verify_restore() { # verify_restore TOOL DIR -> appends to $VERIFY
    local tool=$1 dir=$2 root="" c
    for c in "$dir" "$dir$DATA" "$dir/${DATA#/}"; do
        if [[ -e $c/$MARKER ]]; then root=$c; break; fi
    done
    if [[ -z $root ]]; then
        printf '%s\tno\trestored tree not found under %s\n' "$tool" "$dir" >>"$VERIFY"
        warn "$tool: restored data not found under $dir"
        return
    fi
    local vlog="$LOGS/$tool.verify.log"
    if ! diff -r --no-dereference "$DATA" "$root" >"$vlog" 2>&1; then
        printf '%s\tno\tcontent differs: %s lines in logs/%s.verify.log\n' "$tool" \
            "$(wc -l <"$vlog")" "$tool" >>"$VERIFY"
        warn "$tool: restore differs from the source; first lines of $vlog:"
        head -n 10 "$vlog" >&2
        return
    fi
    if ! diff <(meta_list "$DATA") <(meta_list "$root") >"$LOGS/$tool.verify-meta.log" 2>&1; then
        printf '%s\tcontent\tcontent identical; modes/mtimes/links differ (logs/%s.verify-meta.log)\n' \
            "$tool" "$tool" >>"$VERIFY"
        warn "$tool: content identical but metadata differs, see $LOGS/$tool.verify-meta.log"
        return
    fi
    printf '%s\tyes\tcontent and metadata identical\n' "$tool" >>"$VERIFY"
    log "$tool restore verified: content and metadata identical"
}

# ---------------------------------------------------------------------------------------
# run

case $SET in
    dss)
        log "generating data: scale $SCALE, seed $SEED -> $DATA"
        python3 "$BENCH_DIR/gen_data.py" "$DATA" --scale "$SCALE" --seed "$SEED" | tee "$LOGS/gen_data.log" ;;
    many-files)
        log "generating data: $FILES small files, seed $SEED -> $DATA"
        python3 "$BENCH_DIR/gen_sets.py" many-files "$DATA" --files "$FILES" --seed "$SEED" \
            | tee "$LOGS/gen_data.log" ;;
    large-file)
        log "generating data: one $SIZE_MIB MiB file and one of an eighth, seed $SEED -> $DATA"
        python3 "$BENCH_DIR/gen_sets.py" large-file "$DATA" --size-mib "$SIZE_MIB" --seed "$SEED" \
            | tee "$LOGS/gen_data.log" ;;
esac
read -r data_bytes data_files < <(data_stats)

meta set "$SET"
meta scale "$SCALE"
meta seed "$SEED"
meta percent "$PERCENT"
meta data_bytes "$data_bytes"
meta data_files "$data_files"
meta nproc "$(nproc)"
meta mem_kib "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
meta cpu "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
meta kernel "$(uname -r)"
meta filesystem "$(df -PT "$OUT" | awk 'NR == 2 {print $2}')"
meta date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
meta tools_requested "${REQUESTED[*]}"
meta tools_run "${TOOLS_RUN[*]}"
for t in "${TOOLS_RUN[@]}"; do
    case $t in
        holdfast) v=$("$HOLDFAST" --version 2>/dev/null | head -n 1) || v="holdfast (unknown version)" ;;
        holdfast-s3) v="$("$HOLDFAST" --version 2>/dev/null | head -n 1) on $(s3s-fs --version 2>/dev/null | head -n 1 || echo s3s-fs)" ;;
        restic) v=$(restic version | head -n 1) ;;
        restic-s3) v="$(restic version | head -n 1) on $(s3s-fs --version 2>/dev/null | head -n 1 || echo s3s-fs)" ;;
        borg) v=$(borg --version | head -n 1) ;;
        rustic) v=$(rustic --version 2>/dev/null | head -n 1) || v=rustic ;;
        tar-gzip) v="$(tar --version | head -n 1); $(gzip --version | head -n 1)" ;;
        tar-zstd) v="$(tar --version | head -n 1); $(zstd --version | head -n 1)" ;;
    esac
    meta "version_$t" "$v"
done

# reset_tool TOOL : an empty repository again (untimed), for another first backup
reset_tool() {
    local tool=$1
    rm -rf "$OUT/cache/$tool"
    case $tool in
        tar-gzip) rm -f "$OUT/tar/backup-1.tar.gz" ;;
        tar-zstd) rm -f "$OUT/tar/backup-1.tar.zst" ;;
        *-s3) rm -rf "$OUT/s3/bench/$tool" ;;
        *) rm -rf "$(repo_dir "$tool")" ;;
    esac
    CMD=()
    tool_cmd "$tool" init
    "${CMD[@]}" >"$LOGS/$tool.reinit.log" 2>&1
}

log "phase 1: first backups ($REPEAT rounds, tools in turn), then no-change backups"
meta repeat "$REPEAT"
for t in "${TOOLS_RUN[@]}"; do
    step "$t" init init || continue
done
for ((round = 1; round <= REPEAT; round++)); do
    for t in "${TOOLS_RUN[@]}"; do
        [[ -z ${FAILED[$t]:-} ]] || continue
        if ((round > 1)) && ! reset_tool "$t"; then
            FAILED[$t]=init
            warn "$t: could not make a fresh repository (logs/$t.reinit.log)"
            continue
        fi
        warm_cache
        step "$t" backup1 backup 1 || continue
    done
done
for t in "${TOOLS_RUN[@]}"; do
    [[ -z ${FAILED[$t]:-} ]] || continue
    printf '%s\tbackup1\t%s\n' "$t" "$(stored_bytes "$t")" >>"$SIZES"
    warm_cache
    step "$t" backup2 backup 2 || continue
    printf '%s\tbackup2\t%s\n' "$t" "$(stored_bytes "$t")" >>"$SIZES"
done

if [[ $SET == dss ]]; then
    LAST=3
    log "mutating the data once (gen_data.py --mutate --percent $PERCENT)"
    python3 "$BENCH_DIR/gen_data.py" --mutate "$DATA" --seed "$SEED" --percent "$PERCENT" \
        | tee -a "$LOGS/gen_data.log"
    log "phase 2: after-change backups"
    for t in "${TOOLS_RUN[@]}"; do
        warm_cache
        step "$t" backup3 backup 3 || continue
        printf '%s\tbackup3\t%s\n' "$t" "$(stored_bytes "$t")" >>"$SIZES"
    done
else
    # The other sets measure scale, not change: the latest backup is the no-change one.
    LAST=2
fi
read -r data_bytes2 data_files2 < <(data_stats)
meta data_bytes_after_mutate "$data_bytes2"
meta data_files_after_mutate "$data_files2"

# fresh_restore_dir DIR: an empty DIR; with --restore-fs fresh, a new ext4 file system
# mounted there, sized for the data (twice its size, plus room for inodes).
fresh_restore_dir() {
    local dir=$1
    if mountpoint -q "$dir" 2>/dev/null; then umount "$dir"; fi
    rm -rf "$dir"
    mkdir -p "$dir"
    if [[ $RESTORE_FS == fresh ]]; then
        local img="$OUT/restore.img"
        rm -f "$img"
        truncate -s $((data_bytes * 2 + data_files * 8192 + (256 << 20))) "$img"
        mkfs.ext4 -q -F -N $((data_files * 2 + 100000)) "$img"
        mount -o loop "$img" "$dir"
        rmdir "$dir/lost+found" # an empty target, as without a fresh file system
    fi
}
drop_restore_dir() {
    local dir=$1
    if mountpoint -q "$dir" 2>/dev/null; then umount "$dir"; fi
    rm -rf "$dir"
    rm -f "$OUT/restore.img"
}
meta restore_fs "$RESTORE_FS"

log "phase 3: full restores ($REPEAT rounds, tools in turn, each into an empty directory; the first verified)"
for ((round = 1; round <= REPEAT; round++)); do
    for t in "${TOOLS_RUN[@]}"; do
        rdir="$OUT/restore/$t"
        fresh_restore_dir "$rdir"
        step "$t" restore restore "$rdir" || { drop_restore_dir "$rdir"; continue; }
        ((round == 1)) && verify_restore "$t" "$rdir"
        ((KEEP_RESTORES && round == REPEAT)) || drop_restore_dir "$rdir"
    done
done

for t in "${TOOLS_RUN[@]}"; do
    if [[ -n ${FAILED[$t]:-} ]]; then NOTES+=("$t failed at ${FAILED[$t]} (see logs/$t.${FAILED[$t]}.log)"); fi
done
printf '%s\n' "${NOTES[@]+"${NOTES[@]}"}" >"$OUT/notes.txt"

# ---------------------------------------------------------------------------------------
# report: results.md and results.json

python3 - "$OUT" <<'PY'
import json, os, sys

out = sys.argv[1]
def rows(name):
    p = os.path.join(out, name)
    with open(p) as f:
        return [l.rstrip("\n").split("\t") for l in f if l.strip()]

meta = {k: v for k, v in rows("meta.tsv")}
notes = [l[0] for l in rows("notes.txt")]
tools = meta["tools_run"].split()
res = {t: {"version": meta.get("version_" + t, ""), "phases": {}, "stored_bytes_after": {},
           "stored_bytes": None, "restore_verified": None, "verify_detail": ""} for t in tools}

def num(x):
    try:
        return float(x)
    except ValueError:
        return None

runs = {}
for tool, phase, e, u, s, m, rc in rows("results.tsv"):
    wall, user, sys_, rss = num(e), num(u), num(s), num(m)
    runs.setdefault((tool, phase), []).append({
        "wall_s": wall, "user_s": user, "sys_s": sys_,
        "cpu_s": round(user + sys_, 2) if user is not None and sys_ is not None else None,
        "peak_rss_mib": round(rss / 1024, 1) if rss is not None else None,
        "exit_code": int(rc), "ok": rc == "0"})
# A phase run several times (first backups) is reported by its median run by wall time; a
# failed run wins, so that a failure is never hidden.
for (tool, phase), rs in runs.items():
    failed = [r for r in rs if not r["ok"]]
    chosen = failed[0] if failed else sorted(rs, key=lambda r: r["wall_s"] or 0)[len(rs) // 2]
    if len(rs) > 1:
        chosen = dict(chosen, runs_wall_s=[r["wall_s"] for r in rs])
    res[tool]["phases"][phase] = chosen
for tool, phase, b in rows("sizes.tsv"):
    res[tool]["stored_bytes_after"][phase] = int(b)
    if phase == ("backup3" if meta["set"] == "dss" else "backup2"):
        res[tool]["stored_bytes"] = int(b)
for tool, status, detail in rows("verify.tsv"):
    res[tool]["restore_verified"] = status
    res[tool]["verify_detail"] = detail

def cell(tool, phase, key, fmt="{:.2f}"):
    p = res[tool]["phases"].get(phase)
    if p is None:
        return "–"
    if not p["ok"]:
        return "failed"
    v = p[key]
    return "?" if v is None else fmt.format(v)

mb = lambda b: b / 1e6
data_b, data_n = int(meta["data_bytes"]), int(meta["data_files"])
lines = []
dss = meta["set"] == "dss"
if dss:
    lines.append(f"Data: {mb(data_b):.1f} MB in {data_n} files (set dss, scale {meta['scale']}, seed {meta['seed']}); "
                 f"after --mutate ({meta['percent']}%): {mb(int(meta['data_bytes_after_mutate'])):.1f} MB "
                 f"in {meta['data_files_after_mutate']} files.")
else:
    lines.append(f"Data: {mb(data_b):.1f} MB in {data_n} files (set {meta['set']}, seed {meta['seed']}).")
lines.append(f"Machine: {meta['nproc']} CPUs ({meta['cpu']}), {int(meta['mem_kib']) / 2**20:.1f} GiB RAM, "
             f"Linux {meta['kernel']}, {meta['filesystem']}; {meta['date']}.")
lines.append("")
hdr = ["tool", "first backup wall s", "first backup CPU s", "first backup peak MiB",
       "no-change backup wall s", "no-change peak MiB"]
if dss:
    hdr.append("after-change backup wall s")
hdr += ["restore wall s", "restore peak MiB",
        "stored MB (3 backups)" if dss else "stored MB (2 backups)", "restore verified"]
lines.append("| " + " | ".join(hdr) + " |")
lines.append("|" + "|".join(["---"] + ["---:"] * (len(hdr) - 2) + ["---"]) + "|")
for t in tools:
    r = res[t]
    v = r["restore_verified"]
    verified = {"yes": "yes", "content": "content only", "no": "NO"}.get(v, "–")
    stored = f"{mb(r['stored_bytes']):.1f}" if r["stored_bytes"] is not None else "–"
    row = [t, cell(t, "backup1", "wall_s"), cell(t, "backup1", "cpu_s"),
           cell(t, "backup1", "peak_rss_mib", "{:.0f}"), cell(t, "backup2", "wall_s"),
           cell(t, "backup2", "peak_rss_mib", "{:.0f}")]
    if dss:
        row.append(cell(t, "backup3", "wall_s"))
    row += [cell(t, "restore", "wall_s"), cell(t, "restore", "peak_rss_mib", "{:.0f}"), stored, verified]
    lines.append("| " + " | ".join(row) + " |")
lines.append("")
lines.append("Times are wall-clock seconds with a warm page cache; first backups and restores are "
             f"the median of {meta.get('repeat', '1')} runs, each into a fresh repository or an empty "
             "directory, the tools taking turns (CPU and peak are those of the median run); CPU = "
             "user + sys of the tool and its children; peak = max RSS of the largest process; "
             "stored MB = 10^6 bytes of repository (or of the archives for tar) after the last backup. "
             + ("Each restore went into a freshly made ext4 file system."
                if meta.get("restore_fs") == "fresh" else
                "All restores went into one file system, each after the previous one was deleted."))
for phase, what in (("backup1", "first backup"), ("restore", "restore")):
    walls = []
    for t in tools:
        w = res[t]["phases"].get(phase, {}).get("runs_wall_s")
        if w:
            walls.append(f"{t} " + " / ".join(f"{x:.2f}" for x in w))
    if walls:
        lines.append(f"- {what} runs, wall s: " + "; ".join(walls))
for n in notes:
    lines.append(f"- note: {n}")
md = "\n".join(lines) + "\n"
with open(os.path.join(out, "results.md"), "w") as f:
    f.write(md)
doc = {"meta": meta, "data": {"bytes": data_b, "files": data_n,
                              "bytes_after_mutate": int(meta["data_bytes_after_mutate"]),
                              "files_after_mutate": int(meta["data_files_after_mutate"])},
       "tools": res, "notes": notes}
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(doc, f, indent=2)
print(md, end="")
PY
log "results: $OUT/results.md, $OUT/results.json; logs in $LOGS"
