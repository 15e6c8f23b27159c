#!/usr/bin/env bash
# Set up the machine, build, and run failoverd's main job: a drill of a plan on a local sandbox of real
# PostgreSQL under write load. Usage: scripts/drill.sh [PLAN] [drill options]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
bash scripts/setup.sh
swift build
plan="${1:-plans/failback-with-rewind.json}"
shift || true
exec .build/debug/failoverd drill "$plan" --report reports/"$(basename "$plan" .json)" "$@"
