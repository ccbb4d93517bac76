#!/usr/bin/env bash
# Runs Tollgate's whole test suite on a fresh machine with only the Rust toolchain:
# installs what the tests need if it is missing, then runs every test of the workspace with the
# locked dependencies (Cargo.lock), as CI does.
set -euo pipefail
cd "$(dirname "$0")"

# Real servers the tests start on loopback, on ephemeral ports: Prometheus (and promtool) and Redis,
# from Debian. Nothing already installed or running is touched.
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
if [ ${#need[@]} -gt 0 ]; then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  echo "installing missing test dependencies: ${need[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  # systemd when it is the init (not merely installed, as in most containers); else SysV scripts.
  systemd=false
  [ -d /run/systemd/system ] && systemd=true
  is_active() {
    if $systemd; then
      systemctl is-active --quiet "$1"
    else
      $sudo_cmd service "$1" status >/dev/null 2>&1
    fi
  }
  # The packages' services that are running before the install belong to the user: remember them.
  services=()
  for pkg in "${need[@]}"; do
    case "$pkg" in prometheus | redis-server) services+=("$pkg") ;; esac
  done
  was_running=()
  for svc in ${services[@]+"${services[@]}"}; do
    if is_active "$svc"; then was_running+=("$svc"); fi
  done
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The install may have started the packages' services; the tests start their own on ephemeral
  # ports. Stop (and keep from starting at boot) only a service this install started.
  for svc in ${services[@]+"${services[@]}"}; do
    case " ${was_running[*]-} " in *" $svc "*) continue ;; esac
    is_active "$svc" || continue
    echo "stopping the $svc service that its package install just started" >&2
    if $systemd; then
      $sudo_cmd systemctl disable --now "$svc" >/dev/null 2>&1 || true
    else
      $sudo_cmd service "$svc" stop >/dev/null 2>&1 || true
    fi
  done
fi

# cargo-nextest runs the suite in parallel processes; fall back to cargo's own runner without it.
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  echo "cargo-nextest not found: using the built-in test runner" >&2
  exec cargo test --workspace --locked --no-fail-fast "$@"
fi
