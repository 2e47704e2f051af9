#!/usr/bin/env bash
# Makes sure this machine can build the crate and run its tests and demo, installing with apt
# what is missing, then checks it for real (scripts/test.sh and scripts/demo.sh run it first):
#
#   - etcd 3.4+ answering `--version`: $ETCD_BIN, else `etcd` on PATH (Debian: etcd-server);
#   - protoc able to compile a proto importing google/protobuf/descriptor.proto and
#     struct.proto, as etcd-client's build script does: $PROTOC, else `protoc` on PATH, with
#     $PROTOC_INCLUDE as an extra include dir when set, as prost-build runs it (Debian:
#     protobuf-compiler for protoc, libprotobuf-dev for the include files);
#   - cargo, and rustc at least the `rust-version` of Cargo.toml;
#   - with `--tests` only: a Prometheus server answering `--version` (tests/metrics.rs runs one
#     under `--features metrics`): $PROMETHEUS_BIN, else `prometheus` on PATH (Debian:
#     prometheus).
#
# A tool named by ETCD_BIN, PROTOC or PROMETHEUS_BIN is used as it is, never replaced by an installed one.
# Without apt-get, or without root or sudo, it prints what to install and fails.
# `--tests` also checks the toolchain components scripts/test.sh uses (rustfmt, clippy).
# Idempotent; exits non-zero with a message naming what is missing and how to get it.
set -euo pipefail
cd "$(dirname "$0")/.."

for_tests=false
[ "${1:-}" = "--tests" ] && for_tests=true

say() { echo "setup: $*" >&2; }

# The oldest etcd the fixture and the tests are made for.
ETCD_MIN=3.4

# version_ge A B: whether dotted version A >= B (numeric parts; missing parts count as 0).
version_ge() {
  local IFS=.
  local -a a=($1) b=($2)
  local i
  for i in 0 1 2; do
    local x=${a[i]:-0} y=${b[i]:-0}
    x=${x%%[!0-9]*} y=${y%%[!0-9]*}
    if [ "${x:-0}" -gt "${y:-0}" ]; then return 0; fi
    if [ "${x:-0}" -lt "${y:-0}" ]; then return 1; fi
  done
  return 0
}

# one_line TEXT: its first lines joined, for a one-line message.
one_line() { printf '%s\n' "$1" | head -n 3 | tr '\n' ' ' | sed 's/ *$//'; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# --- checks: each sets a problem text (empty when fine) ---------------------------------------

etcd_problem=""
etcd_pkg="" # the Debian package that would fix it, if any
check_etcd() {
  etcd_problem="" etcd_pkg=""
  local bin out version
  if [ -n "${ETCD_BIN:-}" ]; then
    bin=$ETCD_BIN
    if ! command -v "$bin" >/dev/null 2>&1; then
      etcd_problem="ETCD_BIN=$bin is not an executable"
      return
    fi
  elif ! bin=$(command -v etcd 2>/dev/null); then
    etcd_problem="no etcd: ETCD_BIN is not set and there is no \`etcd\` on PATH"
    etcd_pkg=etcd-server
    return
  fi
  if ! out=$("$bin" --version 2>&1); then
    etcd_problem="\`$bin --version\` failed: $(one_line "$out")"
    return
  fi
  version=$(printf '%s\n' "$out" | sed -n 's/^etcd Version: *\([0-9][0-9.]*\).*/\1/p' | head -n 1)
  if [ -z "$version" ]; then
    etcd_problem="\`$bin --version\` does not print an etcd version: $(one_line "$out")"
  elif ! version_ge "$version" "$ETCD_MIN"; then
    etcd_problem="$bin is etcd $version; the tests need etcd $ETCD_MIN or later"
  else
    etcd_found="etcd $version ($bin)"
  fi
}

protoc_problem=""
protoc_pkgs=() # the Debian packages that would fix it, if any
check_protoc() {
  protoc_problem="" protoc_pkgs=()
  local protoc=${PROTOC:-protoc} out tmp
  if ! command -v "$protoc" >/dev/null 2>&1; then
    if [ -n "${PROTOC:-}" ]; then
      protoc_problem="PROTOC=$PROTOC is not an executable"
    else
      protoc_problem="no protoc: PROTOC is not set and there is no \`protoc\` on PATH"
      protoc_pkgs=(protobuf-compiler libprotobuf-dev)
    fi
    return
  fi
  if ! out=$("$protoc" --version 2>&1); then
    protoc_problem="\`$protoc --version\` failed: $(one_line "$out")"
    return
  fi
  local version=$out
  # prost-build refuses a PROTOC_INCLUDE that is not a directory.
  if [ -n "${PROTOC_INCLUDE:-}" ] && [ ! -d "$PROTOC_INCLUDE" ]; then
    protoc_problem="PROTOC_INCLUDE=$PROTOC_INCLUDE is not a directory"
    return
  fi
  # Compile what etcd-client's protos import, the way prost-build calls protoc.
  tmp=$(mktemp -d)
  cat >"$tmp/setup_check.proto" <<'EOF'
syntax = "proto3";
package setup_check;
import "google/protobuf/descriptor.proto";
import "google/protobuf/struct.proto";
message Check {
  google.protobuf.FileDescriptorProto file = 1;
  google.protobuf.Struct value = 2;
}
EOF
  local -a include=(-I "$tmp")
  if [ -n "${PROTOC_INCLUDE:-}" ]; then include+=(-I "$PROTOC_INCLUDE"); fi
  if ! out=$("$protoc" --include_imports "${include[@]}" -o "$tmp/check.pb" \
    "$tmp/setup_check.proto" 2>&1); then
    rm -rf "$tmp"
    protoc_problem="$protoc ($version) cannot find protobuf's include files (google/protobuf/descriptor.proto, struct.proto): $(one_line "$out")"
    if [ -z "${PROTOC:-}" ] && [ "$(readlink -f "$(command -v protoc)")" = /usr/bin/protoc ]; then
      protoc_pkgs=(libprotobuf-dev)
    fi
    return
  fi
  rm -rf "$tmp"
  protoc_found="$version ($protoc)"
}

prometheus_problem=""
prometheus_pkg="" # the Debian package that would fix it, if any
check_prometheus() {
  prometheus_problem="" prometheus_pkg=""
  $for_tests || return 0
  local bin out
  if [ -n "${PROMETHEUS_BIN:-}" ]; then
    bin=$PROMETHEUS_BIN
    if ! command -v "$bin" >/dev/null 2>&1; then
      prometheus_problem="PROMETHEUS_BIN=$bin is not an executable"
      return
    fi
  elif ! bin=$(command -v prometheus 2>/dev/null); then
    prometheus_problem="no prometheus: PROMETHEUS_BIN is not set and there is no \`prometheus\` on PATH"
    prometheus_pkg=prometheus
    return
  fi
  if ! out=$("$bin" --version 2>&1) || ! printf '%s\n' "$out" | grep -q '^prometheus, version'; then
    prometheus_problem="\`$bin --version\` does not print a Prometheus version: $(one_line "$out")"
    return
  fi
  prometheus_found=", $(printf '%s\n' "$out" | head -n 1 | sed 's/ (.*//') ($bin)"
}

# The fixes that installing Debian packages cannot make, and the packages that can.
run_checks() {
  check_etcd
  check_protoc
  check_prometheus
  pkgs=()
  if [ -n "$etcd_pkg" ] && ! installed "$etcd_pkg"; then pkgs+=("$etcd_pkg"); fi
  if [ -n "$prometheus_pkg" ] && ! installed "$prometheus_pkg"; then pkgs+=("$prometheus_pkg"); fi
  local p
  for p in "${protoc_pkgs[@]}"; do
    if ! installed "$p"; then pkgs+=("$p"); fi
  done
}

# What to do by hand, for the problems still there.
advice() {
  say "what is missing:"
  [ -z "$etcd_problem" ] || say "  - $etcd_problem"
  [ -z "$protoc_problem" ] || say "  - $protoc_problem"
  [ -z "$prometheus_problem" ] || say "  - $prometheus_problem"
  say "to fix it:"
  if [ -n "$etcd_problem" ]; then
    if [ -n "${ETCD_BIN:-}" ]; then
      say "  - etcd: point ETCD_BIN at an etcd $ETCD_MIN+ binary, or unset it to use \`etcd\` on PATH"
    else
      say "  - etcd: on Debian or Ubuntu, as root: apt-get install --no-install-recommends etcd-server;"
      say "    elsewhere: an etcd $ETCD_MIN+ binary, as \`etcd\` on PATH or named by ETCD_BIN=/path/to/etcd"
    fi
  fi
  if [ -n "$prometheus_problem" ]; then
    if [ -n "${PROMETHEUS_BIN:-}" ]; then
      say "  - prometheus: point PROMETHEUS_BIN at a Prometheus server binary, or unset it to use \`prometheus\` on PATH"
    else
      say "  - prometheus: on Debian or Ubuntu, as root: apt-get install --no-install-recommends prometheus;"
      say "    elsewhere: a Prometheus 2.x server, as \`prometheus\` on PATH or named by PROMETHEUS_BIN"
    fi
  fi
  if [ -n "$protoc_problem" ]; then
    if [ -n "${PROTOC:-}${PROTOC_INCLUDE:-}" ]; then
      say "  - protoc: point PROTOC at a protoc binary and, if it does not find google/protobuf/*.proto"
      say "    by itself, PROTOC_INCLUDE at the directory holding google/ (a protobuf release's include/;"
      say "    /usr/include with Debian's libprotobuf-dev); or unset them to use \`protoc\` on PATH"
    else
      say "  - protoc: on Debian or Ubuntu, as root: apt-get install --no-install-recommends protobuf-compiler libprotobuf-dev;"
      say "    elsewhere: protoc with its include files, as \`protoc\` on PATH or named by PROTOC=/path/to/protoc,"
      say "    plus PROTOC_INCLUDE=/path/to/include (the directory holding google/protobuf/*.proto) if it does"
      say "    not find them by itself"
    fi
  fi
}

# --- Rust -------------------------------------------------------------------------------------

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is not on PATH: install a Rust toolchain (rustup, or Debian's cargo and rustc)"
  exit 1
fi
msrv=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n 1)
rustc=${RUSTC:-rustc}
if ! rustc_out=$("$rustc" --version 2>&1); then
  say "\`$rustc --version\` failed: $rustc_out"
  exit 1
fi
rustc_version=$(printf '%s\n' "$rustc_out" | sed -n 's/^rustc \([0-9][0-9.]*\).*/\1/p')
if [ -n "$msrv" ] && ! version_ge "${rustc_version:-0}" "$msrv"; then
  say "$rustc_out is too old: this crate needs Rust $msrv or later (rust-version in Cargo.toml);" \
    "with rustup: rustup update stable"
  exit 1
fi
if $for_tests; then
  for component in fmt clippy; do
    if ! cargo "$component" --version >/dev/null 2>&1; then
      say "\`cargo $component\` is missing; with rustup: rustup component add ${component/fmt/rustfmt}"
      exit 1
    fi
  done
fi

# --- etcd and protoc: install what is missing, then check again -------------------------------

etcd_found="" protoc_found="" prometheus_found=""
run_checks
if [ -n "$etcd_problem$protoc_problem$prometheus_problem" ] && [ "${#pkgs[@]}" -gt 0 ]; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      sudo=(none)
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1 || [ "${sudo[*]}" = none ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
      say "no apt-get here: cannot install ${pkgs[*]}"
    else
      say "not root and no password-less sudo: cannot install ${pkgs[*]}"
    fi
    advice
    exit 1
  fi
  say "installing ${pkgs[*]}"
  "${sudo[@]}" apt-get update -qq || say "apt-get update failed; trying the install anyway"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${pkgs[@]}" >/dev/null
  run_checks
fi
if [ -n "$etcd_problem$protoc_problem$prometheus_problem" ]; then
  advice
  exit 1
fi
say "ok: ${rustc_out%% (*}, $etcd_found, $protoc_found with protobuf's include files$prometheus_found"
