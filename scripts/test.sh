#!/usr/bin/env bash
# Fresh machine -> green tests, in one command: `bash scripts/test.sh [pytest args]`.
# Creates .venv (if missing), installs the pinned requirements, builds fss_attr._C with
# --no-build-isolation (CUDA sources too when a toolkit is present, see setup.py), prints
# `python -m fss_attr.info`, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -r requirements.txt
python -m pip install -q --no-build-isolation --no-deps -e .
python -m fss_attr.info
python -m pytest -q "$@"
