"""``fss-attr evaluate``: its outputs agree with direct metric calls; the table and the command line."""
import csv
import json

import pytest
import torch

from fss_attr.baselines import make_explainer
from fss_attr.cli import main
from fss_attr.commands.evaluate import load_model
from fss_attr.evaluation import EvaluationConfig, evaluate_episodes, row_fields
from fss_attr.evaluation.report import build_summary, markdown_table, summarise, write_report
from fss_attr.metrics import evaluate
from tests.test_metrics_batched import CountingModel
from tests.test_metrics_models import ConvMatcher, blob_episode

METRICS = ("miou", "iauc", "dauc", "diff", "iauc@1%", "miouloss@1%", "miouloss@5%", "image_iauc", "infidelity_norm")


@pytest.mark.filterwarnings("ignore")
def test_run_evaluation_writes_what_the_metrics_give(gen, tmp_path):
    seed = int(torch.randint(0, 2**30, (1,), generator=gen))
    episodes = [blob_episode(torch.Generator().manual_seed(seed + i), b=1, n=2, size=(16, 16)) for i in range(3)]
    model = ConvMatcher().double()
    names = ("affex-masked", "saliency", "random")
    explainers = {n: make_explainer(n, **({"backend": "torch"} if n.startswith("affex") else {})) for n in names}
    metric_model = CountingModel(model)
    config = EvaluationConfig(metrics=METRICS, steps=10, infidelity_perturbations=2)
    results = list(evaluate_episodes(model, iter(episodes), explainers, config, metric_model=metric_model))
    rows = [row for r in results for row in r.rows]
    curves = {(r.index, n): c for r in results for n, c in r.curves.items()}
    summary = build_summary(rows, config.all_metrics(), {"model": "ConvMatcher"}, expected_episodes=3)
    write_report(tmp_path, rows, curves, summary, row_fields(config.all_metrics()))
    assert metric_model.seen > 0      # the metrics ran on metric_adapter
    with open(tmp_path / "episodes.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and {r["explainer"] for r in rows} == set(names)
    # the CSV holds exactly what evaluate() gives on the deterministic explainers' maps; episode i's infidelity
    # draws use seeds 2i, 2i + 1 (J = 2), so no two episodes share a draw
    for i, ep in enumerate(episodes):
        for n in ("affex-masked", "saliency"):
            ex = make_explainer(n, **({"backend": "torch"} if n.startswith("affex") else {})).explain(model, ep)
            want = evaluate(model, ep, ex.maps.double(), METRICS + ("relevance_mass", "pointing_game"),
                            region=ex.region, steps=10, infidelity_perturbations=2, seed=2 * i)
            row = next(r for r in rows if r["explainer"] == n and int(r["episode"]) == i)
            for m, v in want.items():
                assert float(row[m]) == pytest.approx(v.item(), rel=1e-12, abs=1e-15), (n, i, m)
    # the summary is the mean of the CSV over the episodes that are not degenerate (issue 15: an explained
    # region covering the whole query makes the AffEx map rounding noise, so such episodes are left out)
    stored = json.loads((tmp_path / "summary.json").read_text())
    assert stored["episodes"] == summary["episodes"] == 3
    kept = [r for r in rows if r["degenerate"] == "0"]
    assert stored["episodes_in_means"] == len({r["episode"] for r in kept})
    for n in names:
        for m in METRICS + ("pointing_game",):
            vals = [float(r[m]) for r in kept if r["explainer"] == n]
            if not vals:
                continue
            assert stored["metrics"][n][m]["mean"] == pytest.approx(sum(vals) / len(vals), rel=1e-12, abs=1e-15)
    table = (tmp_path / "table.md").read_text()
    assert table.index("| Random |") < table.index("| Saliency |") < table.index("| AffEx Masked |")
    assert "IAUC (mIoU)" in table and "Pointing" in table and "**" in table
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_markdown_table_bolds_the_best_in_each_direction():
    rows = [{"explainer": "random", "iauc": 0.5, "dauc": 0.4}, {"explainer": "affex-masked", "iauc": 0.7, "dauc": 0.2},
            {"explainer": "lime", "iauc": 0.6, "dauc": 0.1}, {"explainer": "lime", "iauc": 0.8, "dauc": 0.3}]
    s = summarise(rows, ("iauc", "dauc"))
    assert s["lime"]["iauc"]["mean"] == pytest.approx(0.7) and s["lime"]["iauc"]["n"] == 2
    assert s["lime"]["iauc"]["sem"] == pytest.approx(0.1)     # sample sd 0.1·√2, over √2
    lines = markdown_table(s).splitlines()
    assert lines[0].startswith("| Explainer | IAUC (mIoU) ↑ | DAUC (mIoU) ↓ |")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["Random", "LIME", "AffEx Masked"]
    assert "**70.00** | **20.00**" in lines[4] and "| **70.00** |" in lines[3]   # tie on IAUC: both bold
    with_empty = summarise(rows, ("iauc", "dauc", "pointing_game"))           # no value: no column
    assert markdown_table(with_empty) == markdown_table(s)


def test_table_rows_follow_the_papers_table_a_with_its_names():
    from fss_attr.baselines.registry import EXPLAINERS
    from fss_attr.commands.evaluate import TABLE_A
    from fss_attr.evaluation.report import DISPLAY

    rows = [{"explainer": n, "iauc": 0.5} for n in reversed(EXPLAINERS)]
    names = [line.split("|")[1].strip() for line in markdown_table(summarise(rows, ("iauc",))).splitlines()[2:]]
    assert set(DISPLAY) == set(EXPLAINERS)                   # every explainer has its display name
    want = ["Random", "GaussNoise", "Saliency", "IG", "GuidedIG", "BlurIG", "XRAI", "DeepLift", "GradientShap",
            "LIME", "AffEx Unmasked", "AffEx Masked", "AffEx Signed"]
    assert names == want
    assert [DISPLAY[n] for n in TABLE_A] == [n for n in want if n != "GradientShap"]


def test_command_line_rejects_bad_names(capsys):
    assert main(["evaluate", "--explainers", "random,gradcam"]) == 2
    assert "unknown explainer 'gradcam'" in capsys.readouterr().err
    assert main(["evaluate", "--metrics", "iauc,nope"]) == 2
    assert "unknown metric 'nope'" in capsys.readouterr().err


def test_the_compiled_model_shares_the_eager_weights():
    """--compile: the metrics' model wraps the same backbone module (compiling happens on its first call)."""
    model, fast = load_model("cpu", compile_backbone=True)
    assert fast is not model and fast.backbone._orig_mod is model.backbone
    assert fast.temperature == model.temperature and fast.n_levels == model.n_levels
