"""The demo command end to end (small), and the explanation figure."""
import json

from fss_attr.cli import main


def test_demo_writes_figure_and_report(tmp_path):
    assert main(["demo", "--shots", "2", "--size", "96", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "demo.json").read_text())
    assert (tmp_path / "figure.png").stat().st_size > 10_000
    assert set(report["scores"]) == {"unmasked", "masked", "signed"}
    assert 0.0 <= report["query_foreground_iou"] <= 1.0
    assert abs(sum(report["level_weights"]) - 1.0) < 1e-9
    for s in report["scores"].values():
        assert 0.0 <= s["relevance_mass_in_evidence"] <= 1.0
