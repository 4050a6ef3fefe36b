#!/usr/bin/env bash
# Set up (if needed) and run the main demo: BN vs no-BN twins on the embedded MNIST data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-1000000000} MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-1000000000}
nrflab demo --workers 2 "$@"  # two local processes: 10 runs (5 seeds x 2 twins) on 2 cores
