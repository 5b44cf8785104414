#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/main.sh: creates .venv (if missing), installs the pinned requirements,
# builds fss_attr._C with --no-build-isolation (CUDA sources too when a toolkit is present, see setup.py) and
# prints `python -m fss_attr.info`. Leaves .venv activated.
#
# Idempotent: a second run on an unchanged tree does no pip work and no compile. Two stamps in .venv record
# what was done last:
#   .venv/.fss_attr-requirements   hash of requirements.txt and the interpreter; pip runs only when it changes
#   .venv/.fss_attr-build          hash of setup.py, pyproject.toml, csrc/, the requirements stamp and the build
#                                  switches (FSS_ATTR_*, CUDA_HOME, TORCH_CUDA_ARCH_LIST, MAX_JOBS excluded);
#                                  the build runs when it changes or when fss_attr._C of this tree fails to import
# FSS_ATTR_FORCE_SETUP=1 ignores both stamps. `python -m fss_attr.info` (a few seconds: it times every backend)
# runs when pip or the build ran, or with FSS_ATTR_SETUP_INFO=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate

_fss_hash() { sha256sum | cut -d' ' -f1; }
_fss_force=${FSS_ATTR_FORCE_SETUP:-0}
_fss_info=${FSS_ATTR_SETUP_INFO:-0}

_fss_req=$( { cat requirements.txt; python -c 'import sys; print(sys.version)'; } | _fss_hash)
if [ "$_fss_force" = 1 ] || [ "$(cat .venv/.fss_attr-requirements 2>/dev/null)" != "$_fss_req" ]; then
    rm -f .venv/.fss_attr-requirements .venv/.fss_attr-build
    python -m pip install -q --upgrade pip
    python -m pip install -q -r requirements.txt
    echo "$_fss_req" > .venv/.fss_attr-requirements
    _fss_info=1
else
    echo "setup_env: requirements unchanged, pip skipped"
fi

_fss_build=$( {
    echo "$_fss_req"
    env | grep -E '^(FSS_ATTR_(WITH_CUDA|CPU_FLAGS|DEBUG)|CUDA_HOME|TORCH_CUDA_ARCH_LIST)=' | sort || true
    find setup.py pyproject.toml csrc -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
} | _fss_hash)
_fss_ext_ok() {  # this tree's fss_attr._C imports (and the editable install points here)
    python - "$PWD" <<'EOF' >/dev/null 2>&1
import os, sys
import fss_attr._C  # noqa: F401
import fss_attr
assert os.path.realpath(fss_attr.__file__).startswith(os.path.realpath(sys.argv[1]) + os.sep)
EOF
}
if [ "$_fss_force" = 1 ] || [ "$(cat .venv/.fss_attr-build 2>/dev/null)" != "$_fss_build" ] || ! _fss_ext_ok; then
    rm -f .venv/.fss_attr-build
    python -m pip install -q --no-build-isolation --no-deps -e .
    echo "$_fss_build" > .venv/.fss_attr-build
    _fss_info=1
else
    echo "setup_env: setup.py, pyproject.toml and csrc/ unchanged and fss_attr._C imports, build skipped"
fi
if [ "$_fss_info" = 1 ]; then
    python -m fss_attr.info
else
    echo "setup_env: environment unchanged (FSS_ATTR_SETUP_INFO=1 prints python -m fss_attr.info)"
fi
unset -f _fss_hash _fss_ext_ok
unset _fss_force _fss_info _fss_req _fss_build
