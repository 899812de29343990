#!/usr/bin/env bash
# Runs each fuzz target for a short time (FUZZ_SECONDS, default 20). Uses the stable toolchain
# with RUSTC_BOOTSTRAP for libFuzzer's flags; installs cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")"
secs=${FUZZ_SECONDS:-20}
if ! command -v cargo-fuzz >/dev/null 2>&1 && ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked -q
fi
export RUSTC_BOOTSTRAP=1
# Seeds for tar import: small archives in the formats GNU tar writes (ustar/GNU, PAX, sparse),
# so that fuzzing starts from valid headers and checksums.
seeds=$(mktemp -d)
trap 'rm -rf "$seeds" /tmp/holdfast-fuzz-tar-*' EXIT
mkdir -p corpus/tar_import "$seeds/t/d"
echo hello >"$seeds/t/d/f"
ln -s f "$seeds/t/d/l"
ln "$seeds/t/d/f" "$seeds/t/h"
truncate -s 100K "$seeds/t/sparse"
printf 'x' >>"$seeds/t/sparse"
tar -C "$seeds" -cf corpus/tar_import/gnu.tar t
tar -C "$seeds" --format=pax -cf corpus/tar_import/pax.tar t
tar -C "$seeds" -S -cf corpus/tar_import/sparse.tar t
for t in pack_header index_file tree tar_import; do
  mkdir -p "corpus/$t"
  echo "fuzzing $t for ${secs}s"
  # -timeout: an input that takes this long is a bug (a hang), reported rather than waited on.
  cargo fuzz run --sanitizer none "$t" -- -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 2>&1 | tail -n 3
  test "${PIPESTATUS[0]}" -eq 0
done
echo "fuzz: 4 targets ran ${secs}s each without a crash"
