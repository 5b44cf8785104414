#!/usr/bin/env bash
# The main job, in one command on a fresh machine: set up (as scripts/test.sh does, without the tests),
# then print the AffEx benchmark table. Extra arguments go to benchmarks/affex_table.py (e.g. --quick).
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
python benchmarks/affex_table.py "$@"
