#!/usr/bin/env bash
# Starts a local etcd cluster and shows the health layer at work.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --quiet --release --example demo -- "$@"
