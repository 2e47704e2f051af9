#!/usr/bin/env bash
# Runs every check and every test, against real etcd clusters the tests start themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests

cargo fmt --all -- --check
# `--workspace`: the library and its test fixture (`testing/`).
cargo clippy --workspace --all-targets --all-features -- -D warnings
# The library without its optional features (no TLS) builds and lints clean too.
cargo clippy --lib -- -D warnings
# Unit, property and integration tests; examples are built too.
cargo test --workspace --all-features --lib --tests --examples
cargo test --workspace --all-features --doc
# Benchmarks must compile; they are run on purpose, not in CI.
cargo build --all-features --benches
# Docs build without warnings (broken links, missing docs).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features
# ... and without the optional features (links to feature-gated items must not break).
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps
# The crate packages as a release would (metadata, the files it needs, no path-only
# dependency) and the packaged tarball builds on its own, build script included.
# `--allow-dirty`: check the working tree as it is, committed or not. `--no-verify`, then a
# `cargo check` of the unpacked tarball in this target dir: the same check of the packaged
# files, on the dependencies `clippy --lib` already built (same features, same lock file),
# where `cargo package`'s own verify builds every dependency again in a target dir of its own
# (2.5-5 min from a fresh clone).
cargo package --allow-dirty --no-verify --quiet
version=$(cargo pkgid -p etcd-health | sed 's/.*[#@]//')
unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
tar xzf "${CARGO_TARGET_DIR:-target}/package/etcd-health-$version.crate" -C "$unpacked"
CARGO_TARGET_DIR="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)" \
  cargo check --locked --quiet --manifest-path "$unpacked/etcd-health-$version/Cargo.toml"
echo "test.sh: every check and test passed in $((SECONDS / 60)) min $((SECONDS % 60)) s"
