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
for t in pack_header index_file tree; do
  mkdir -p "corpus/$t"
  echo "fuzzing $t for ${secs}s"
  cargo fuzz run --sanitizer none "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -n 3
  test "${PIPESTATUS[0]}" -eq 0
done
echo "fuzz: 3 targets ran ${secs}s each without a crash"
