#!/usr/bin/env bash
# Runs Tollgate's whole test suite on a fresh machine with only the Rust toolchain:
# installs what the tests need if it is missing, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")"

# Real servers the tests start on loopback: Prometheus (and promtool) and Redis, from Debian.
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing missing test dependencies: ${need[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The packages start system services; the tests start their own on ephemeral ports.
  $sudo_cmd systemctl disable --now prometheus >/dev/null 2>&1 || true
  $sudo_cmd systemctl disable --now redis-server >/dev/null 2>&1 || true
  $sudo_cmd service redis-server stop >/dev/null 2>&1 || true
fi

# cargo-nextest runs the suite in parallel processes; fall back to cargo's own runner without it.
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  echo "cargo-nextest not found: using the built-in test runner" >&2
  exec cargo test --workspace --no-fail-fast "$@"
fi
