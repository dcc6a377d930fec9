#!/usr/bin/env bash
# Set up what the tests need (scripts/setup.sh --test), then run the linter, the type checker
# (mypy over edge/, configured in pyproject.toml) and the test suite.
#   scripts/test.sh [pytest options]
# Set EDGE_MODEL_MIRROR=DIR to take the models from a local mirror instead of downloading them.
# The last line is the number of skipped tests (with CI=true a missing real asset fails instead).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/python -m mypy
skips="$(mktemp)"
trap 'rm -f "$skips"' EXIT
status=0
EDGE_TEST_SKIPS_FILE="$skips" .venv/bin/python -m pytest "$@" || status=$?
echo "skipped: $(cat "$skips" 2>/dev/null || echo unknown)"
exit "$status"
