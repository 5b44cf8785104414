#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/main.sh: creates .venv (if missing), installs the pinned requirements,
# builds fss_attr._C with --no-build-isolation (CUDA sources too when a toolkit is present, see setup.py) and
# prints `python -m fss_attr.info`. Leaves .venv activated.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -r requirements.txt
python -m pip install -q --no-build-isolation --no-deps -e .
python -m fss_attr.info
