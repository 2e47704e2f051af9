#!/usr/bin/env bash
# Starts a local etcd cluster and shows the health layer at work; its metrics are served over
# HTTP in Prometheus' format while it runs (it prints where).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --quiet --release --features metrics --example demo -- "$@"
