#!/usr/bin/env bash
# Set up (if needed), then check everything on CPU: lint, formatting, types, and the whole test suite
# (the long end-to-end runs marked `slow` included). Extra arguments go to pytest, e.g.
# `bash scripts/test.sh -m "not slow"` for the quick suite only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MPLBACKEND=Agg
echo "== ruff (lint and format)"
ruff check src tests benchmarks
ruff format --check src tests benchmarks
echo "== mypy"
mypy
echo "== import layers"
lint-imports
echo "== pytest"
if [ "$#" -eq 0 ]; then
  set -- -m "slow or not slow"
fi
python -m pytest "$@"
