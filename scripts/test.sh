#!/usr/bin/env bash
# Fresh machine -> green tests, in one command: `bash scripts/test.sh [pytest args]`.
# Sets up .venv and the extension (scripts/setup_env.sh), then runs pytest.
set -euo pipefail
. "$(dirname "$0")/setup_env.sh"
python -m pytest -q "$@"
