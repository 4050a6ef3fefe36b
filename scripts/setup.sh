#!/usr/bin/env bash
# Create .venv (if absent) and install nrflab with its test dependencies; safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! python -c "import torch" 2>/dev/null; then
  pip install -q torch==2.13.0
fi
pip install -q -c constraints.txt -e ".[test]"
# torchattacks is only a test-time reference; its torchvision requirement is not needed by what we use.
python -c "import torchattacks" 2>/dev/null || pip install -q --no-deps "torchattacks==3.5.1"
python -c "import torch, nrflab; print(f'nrflab {nrflab.__version__}, torch {torch.__version__}')"
