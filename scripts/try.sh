#!/usr/bin/env bash
# Builds holdfast, backs up a sample directory, restores it and shows that nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p holdfast
hf="$PWD/target/release/holdfast"
work=$(mktemp -d /tmp/holdfast-try.XXXXXX)
echo "working in $work"
mkdir -p "$work/data/config" "$work/data/projects/DEMO" "$work/data/tmp"
echo '{"product_version": "13.2.0"}' > "$work/data/dss-version.json"
echo '{"name": "demo"}' > "$work/data/projects/DEMO/params.json"
seq 1 100000 > "$work/data/projects/DEMO/numbers.csv"
ln -s ../projects/DEMO "$work/data/config/demo-link"
echo scratch > "$work/data/tmp/scratch"
export HOLDFAST_REPO="$work/repo" HOLDFAST_PASSWORD=demo-password HOLDFAST_CACHE_DIR="$work/cache"
set -x
"$hf" init
"$hf" backup "$work/data" --exclude tmp
echo "one more line" >> "$work/data/projects/DEMO/numbers.csv"
"$hf" backup "$work/data" --exclude tmp
"$hf" snapshots
"$hf" diff "$("$hf" snapshots --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["short_id"])')" latest
"$hf" restore latest --target "$work/restored" --verify
"$hf" check --read-data
"$hf" stats
set +x
rm -rf "$work/data/tmp"
diff -r "$work/data" "$work/restored" && echo "restored tree is identical to the source (tmp/ excluded)"
