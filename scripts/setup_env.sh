#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/main.sh: creates .venv (if missing), installs the pinned requirements,
# builds fss_attr._C with --no-build-isolation (CUDA sources too when a toolkit is present, see setup.py) and
# prints `python -m fss_attr.info`. Leaves .venv activated.
#
# Idempotent: a second run on an unchanged tree does no pip work and no compile. Two stamps in .venv record
# what was done last:
#   .venv/.fss_attr-requirements   hash of requirements.txt and the interpreter; pip runs only when it changes
#   .venv/.fss_attr-build          the build made last, as `python build_config.py` prints it: the build switches
#                                  resolved by the code setup.py builds with (CUDA or not, the CUDA home used,
#                                  arch list, CPU flags, debug; torch, CUDA and Python versions), then a hash of
#                                  setup.py, pyproject.toml, build_config.py and csrc/. The build runs when this
#                                  changes or when fss_attr._C of this tree fails to import. Settings that resolve
#                                  to the same build do not rebuild (FSS_ATTR_WITH_CUDA unset, auto or 1 where CUDA
#                                  can be built), nor does a requirements change that keeps torch; MAX_JOBS is not
#                                  part of it.
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
    rm -f .venv/.fss_attr-requirements
    python -m pip install -q --upgrade pip
    python -m pip install -q -r requirements.txt
    echo "$_fss_req" > .venv/.fss_attr-requirements
    _fss_info=1
else
    echo "setup_env: requirements unchanged, pip skipped"
fi

# What is here now, in one python (importing torch takes seconds): the build stamp, i.e. the build this tree would
# get (build_config.py, the code setup.py builds with; a bad switch value stops here with one line), then a last
# line "ext=ok" when fss_attr._C imports through the installed (editable) package and that package is this tree.
_fss_now=$(python - "$PWD" <<'EOF'
import contextlib, os, sys
root = sys.argv[1]
sys.path[0] = root  # build_config.py of this tree
import build_config
print(build_config.stamp())
sys.path.pop(0)  # fss_attr from the installed package, not from the working directory
try:
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        import fss_attr._C  # noqa: F401
        import fss_attr
    ok = os.path.realpath(fss_attr.__file__).startswith(os.path.realpath(root) + os.sep)
except Exception:
    ok = False
print("ext=ok" if ok else "ext=missing")
EOF
)
_fss_build=${_fss_now%$'\n'*}  # all lines but the last
_fss_old=$(cat .venv/.fss_attr-build 2>/dev/null || true)
if [ "$_fss_force" = 1 ] || [ "$_fss_old" != "$_fss_build" ] || [ "${_fss_now##*$'\n'}" != ext=ok ]; then
    echo "setup_env: building fss_attr._C (${_fss_now##*$'\n'}; stamp lines new or changed:" \
        "$(diff <(echo "$_fss_old") <(echo "$_fss_build") | sed -n 's/^> //p' | tr '\n' ' '))"
    rm -f .venv/.fss_attr-build
    python -m pip install -q --no-build-isolation --no-deps -e .
    echo "$_fss_build" > .venv/.fss_attr-build
    _fss_info=1
else
    echo "setup_env: build unchanged ($(echo "$_fss_build" | head -3 | tr '\n' ' ')...) and fss_attr._C imports," \
        "build skipped"
fi
if [ "$_fss_info" = 1 ]; then
    python -m fss_attr.info
else
    echo "setup_env: environment unchanged (FSS_ATTR_SETUP_INFO=1 prints python -m fss_attr.info)"
fi
unset -f _fss_hash
unset _fss_force _fss_info _fss_req _fss_now _fss_build _fss_old
