#!/usr/bin/env bash
# The main job, in one command on a fresh machine: set up (as scripts/test.sh does, without the tests),
# then run the demo: LiteMatcher (a real pretrained EfficientNet-Lite0 matcher) on a controlled episode built
# from real photos, explained with AffEx (three variants); writes outputs/demo/figure.png and demo.json.
# Extra arguments go to `fss-attr demo` (--seed, --shots, --size, --backend, --out).
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
python -m fss_attr demo "$@"
