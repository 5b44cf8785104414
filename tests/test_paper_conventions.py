"""The AffEx paper's evaluation conventions (issue 16): DMTNet's 5-shot max fusion, empty predictions."""
import pytest
import torch

from fss_attr.data.episode import Episode
from fss_attr.models.dmtnet import DMTNet
from fss_attr.models.hsnet import fuse_shots
from fss_attr.testing import random_masks, random_region
from tests.test_metrics_models import ConvMatcher


pytestmark = pytest.mark.usefixtures("one_thread")


def test_max_fusion_is_the_elementwise_max_of_per_shot_logits(gen):
    shot_logits = torch.randn(2, 3, 2, 5, 7, generator=gen, dtype=torch.float64)
    fused = fuse_shots(shot_logits, "max")
    for b in range(2):
        for c in range(2):
            want = torch.maximum(torch.maximum(shot_logits[b, 0, c], shot_logits[b, 1, c]), shot_logits[b, 2, c])
            assert torch.equal(fused[b, c], want)


def test_dmtnet_max_fusion_equals_the_max_of_one_shot_runs(gen):
    """DMTNet(shot_fusion="max") on a 2-shot episode = the element-wise max of the logits of the two 1-shot
    episodes (the official predict_mask_nshot with vote_prediction off)."""
    torch.manual_seed(3)
    model = DMTNet(shot_fusion="max").double().eval()
    size = (97, 97)
    q = torch.randn(1, 3, *size, generator=gen, dtype=torch.float64)
    s = torch.randn(1, 2, 3, *size, generator=gen, dtype=torch.float64)
    ep = Episode(q, s, random_masks(1, 2, size, generator=gen), query_mask=random_region(1, size, generator=gen))
    with torch.no_grad():
        fused = model(ep)
        singles = [model(Episode(q, s[:, i:i + 1], ep.support_masks[:, i:i + 1])) for i in range(2)]
    torch.testing.assert_close(fused, torch.maximum(*singles), rtol=1e-10, atol=1e-10)
    assert not torch.equal(singles[0], singles[1])


class SeesNothing(ConvMatcher):
    """A ConvMatcher whose foreground logit is lowered by 100: it predicts no foreground anywhere."""

    def decode(self, state, ablate_level=None):
        logits = super().decode(state, ablate_level).clone()
        logits[:, 1] -= 100
        return logits


def test_empty_predictions_under_the_papers_rule(gen):
    """empty_prediction="paper": the maps of explainers that read R are constant (index-order ranking), the
    metrics that read R are NaN, the episode stays in the IoU means; "exclude" flags it degenerate."""
    from fss_attr.baselines import make_explainer
    from fss_attr.evaluation import EvaluationConfig, evaluate_episodes
    from fss_attr.evaluation.report import build_summary, table_text
    from fss_attr.metrics import evaluate
    from tests.test_metrics_models import blob_episode

    ep = blob_episode(gen, b=1, n=2, size=(16, 16))
    model = SeesNothing().double()
    assert not bool((model(ep).argmax(1) == 1).any())
    names = {"random": lambda seed: make_explainer("random", seed=seed),
             "saliency": lambda seed: make_explainer("saliency"),
             "affex-masked": lambda seed: make_explainer("affex-masked")}
    metrics = ("miou", "iauc", "dauc", "iauc@1%", "miouloss@5%", "infidelity")
    runs = {}
    for rule in ("paper", "exclude"):
        config = EvaluationConfig(metrics=metrics, steps=4, empty_prediction=rule, infidelity_perturbations=2)
        runs[rule] = list(evaluate_episodes(model, [ep], names, config))[0]
    paper, exclude = runs["paper"], runs["exclude"]
    for row in paper.rows:
        assert row["empty_prediction"] == 1 and row["degenerate"] == 0
        assert all(row[m] != row[m] for m in ("iauc@1%", "infidelity"))          # NaN
        assert "iauc@1%" not in paper.curves[row["explainer"]] and "iauc" in paper.curves[row["explainer"]]
    assert all(r["empty_prediction"] == 1 and r["degenerate"] == 1 for r in exclude.rows)
    zero = evaluate(model, ep, torch.zeros(1, 2, 16, 16, dtype=torch.float64), ("iauc", "dauc", "miouloss@5%"),
                    steps=4)
    by = {r["explainer"]: r for r in paper.rows}
    for name in ("saliency", "affex-masked"):                                      # read R: a constant map
        for m in ("iauc", "dauc", "miouloss@5%"):
            assert by[name][m] == float(zero[m][0])
        assert by[name]["pointing_game"] != by[name]["pointing_game"]              # a stand-in localises nothing
    assert by["random"]["pointing_game"] == by["random"]["pointing_game"]          # random's own map: defined
    ex = {r["explainer"]: r for r in exclude.rows}
    for m in ("iauc", "dauc", "miouloss@5%"):                                       # random ignores R
        assert by["random"][m] == ex["random"][m]
    s = build_summary(paper.rows, metrics, {"explainers": list(names), "evaluation": config_dict("paper")},
                      expected_episodes=1, environment={})
    assert s["episodes_in_means"] == 1 and s["metrics"]["random"]["iauc"]["n"] == 1
    assert s["metrics"]["random"]["iauc@1%"]["n"] == 0
    assert "1 with an empty prediction kept by the paper's rule" in table_text(s, paper.rows)
    with pytest.raises(ValueError, match="empty_prediction must be one of"):
        EvaluationConfig(empty_prediction="drop")


def config_dict(rule):
    from fss_attr.evaluation import EvaluationConfig

    return EvaluationConfig(empty_prediction=rule).to_dict()
