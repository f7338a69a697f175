#!/usr/bin/env bash
# Offline Model Zoo checks over every bundle in bundles/ (JSON report on stdout; exit 1 on any failure).
# Full-size networks by default; pass --quick for CPU-sized ones. The test suite runs the same checks
# (tests/test_zoo_verify.py).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m common.zoo.verify bundles/*/ "$@"
