#!/usr/bin/env bash
# Set up the machine, build, and run the whole test suite (unit tests, crash/resume with real processes,
# and integration tests against real PostgreSQL 15 and pgBackRest on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
bash scripts/setup.sh
# The project's own .swift-format, as an error: unformatted code fails the build before anything runs.
swift format lint --strict --recursive --parallel Package.swift Sources Tests benchmarks
swift build --build-tests
# A crash of the test process prints the crashed thread's frames last, where a truncated CI log keeps them.
export SWIFT_BACKTRACE="${SWIFT_BACKTRACE:-enable=yes,interactive=no,threads=crashed,registers=none,images=none}"
swift test --skip-build "$@"
