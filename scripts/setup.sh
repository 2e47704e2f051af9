#!/usr/bin/env bash
# Installs what the build and the tests need and is missing: etcd (Debian's etcd-server) and
# protoc (protobuf-compiler, needed by etcd-client's build script). Idempotent.
set -euo pipefail

need=()
if [ -z "${ETCD_BIN:-}" ] && ! command -v etcd >/dev/null 2>&1; then
  need+=(etcd-server)
fi
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)

if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "setup: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not on PATH; install a Rust toolchain (rustup) first" >&2
  exit 1
fi
