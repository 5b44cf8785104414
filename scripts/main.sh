#!/usr/bin/env bash
# The main job, in one command on a fresh machine: set up (scripts/setup_env.sh), then run the demo: LiteMatcher
# (a real pretrained EfficientNet-Lite0 matcher) on a controlled episode built from real photos, explained with
# AffEx (three variants); writes outputs/demo/figure.png and demo.json.
# Extra arguments go to `fss-attr demo` (--seed, --shots, --size, --backend, --out).
set -euo pipefail
. "$(dirname "$0")/setup_env.sh"
python -m fss_attr demo "$@"
