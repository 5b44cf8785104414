"""`python -m fss_attr.info`, and the package without its extension (pure-PyTorch path, said once)."""
import os
import subprocess
import sys

SCRIPT = """
import warnings
warnings.simplefilter("default")
import fss_attr, torch
import fss_attr.ops
from fss_attr import AffinityExplainer, LevelScores
print("backends", fss_attr.available_backends())
lv = LevelScores(torch.randn(1, 4, 8), (2, 2), (2, 2), 2)
r = torch.ones(1, 8, 8, dtype=torch.bool)
print("max", float(AffinityExplainer().explain_levels([lv], r, None).max()))
"""


def run(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_without_extension_runs_on_torch_and_says_so_once():
    p = run(SCRIPT, FSS_ATTR_DISABLE_EXTENSION="1")
    assert p.returncode == 0, p.stderr
    assert "backends ['literal', 'torch']" in p.stdout and "max 1.0" in p.stdout
    assert p.stderr.count("the compiled extension fss_attr._C is not available") == 1


def test_info_reports_backends():
    p = subprocess.run([sys.executable, "-m", "fss_attr.info"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "backends:" in p.stdout and "literal  ok" in p.stdout and "torch    ok" in p.stdout
    p = run("import runpy; runpy.run_module('fss_attr.info', run_name='__main__')", FSS_ATTR_DISABLE_EXTENSION="1")
    assert "NOT loaded (disabled by FSS_ATTR_DISABLE_EXTENSION=1)" in p.stdout


def test_backend_timings_are_a_median_after_a_warm_up():
    from fss_attr.info import backend_report

    rows = dict(backend_report(calls=3))
    assert rows["torch"].startswith("ok (median ") and rows["torch"].endswith(" ms of 3 calls after a warm-up)")
    assert rows["cuda"] in ("not available",) or rows["cuda"].startswith("ok (median")
