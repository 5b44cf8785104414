"""Command-line options are checked before anything loads: exit status 2 and one line naming the option
(issue 15, item 10: the demo, similarity, sat and rcn commands)."""
import pytest

from fss_attr.cli import main


def _fails(argv, capsys, *parts):
    try:
        rc = main(argv)
    except SystemExit as e:            # argparse's usage errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for part in parts:
        assert part in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["demo", "similarity", "sat"])
def test_size_below_the_backbone_minimum(command, capsys, tmp_path):
    _fails([command, "--size", "16", "--out", str(tmp_path / "o")], capsys, f"fss-attr {command}: error",
           "--size", "must be an int >= 32 (EfficientNet-Lite0's smallest input), got 16")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, parts", [
    (["demo", "--shots", "0"], ["--shots", "must be an int >= 1, got 0"]),
    (["demo", "--seed", "-1"], ["--seed", ">= 0"]),
    (["demo", "--size", "big"], ["--size", "must be an int, got 'big'"]),
    (["demo", "--backend", "gpu"], ["--backend", "invalid choice: 'gpu'"]),
    (["similarity", "--layer", "16"], ["--layer", "block index 0..15"]),
    (["sat", "--block", "16"], ["--block", "in 0..15, got 16"]),
    (["sat", "--classes", " , "], ["--classes must name at least one of"]),
    (["sat", "--classes", "cat,dog"], ["--classes: unknown 'dog'; choose from"]),
    (["sat", "--explainers", ""], ["--explainers must name at least one of gradcam, saliency"]),
    (["sat", "--train-per-class", "0"], ["--train-per-class", ">= 1"]),
    (["sat", "--threads", "-2"], ["--threads", ">= 0"]),
    (["rcn", "train", "--root", "."], ["--root does not apply to --data controlled"]),
    (["rcn", "train", "--data", "miniimagenet"], ["--data miniimagenet needs --root"]),
    (["rcn", "train", "--image-size", "8"], ["--image-size", ">= 16 (the few-shot backbones' smallest input)"]),
    (["rcn", "train", "--lr", "0"], ["--lr", "must be a finite number > 0.0"]),
    (["rcn", "train", "--lr", "nan"], ["--lr", "must be a finite number > 0.0"]),
    (["rcn", "train", "--way", "1"], ["--way", ">= 2"]),
    (["rcn", "train", "--shots", "1", "0"], ["--shots", ">= 1"]),
    (["rcn", "evaluate", "--weights", "absent.pt"], ["--weights absent.pt does not exist"]),
    (["rcn", "explain", "--weights", "absent.pt", "--query", "-1"], ["--query", ">= 0"]),
])
def test_bad_options_exit_2_with_one_line(argv, parts, capsys):
    _fails(argv, capsys, *parts)


def test_rcn_explain_query_bound_and_out_folder(capsys, tmp_path):
    w = tmp_path / "w.pt"
    w.write_bytes(b"")
    _fails(["rcn", "explain", "--weights", str(w), "--query", "75"], capsys, "--query must be in 0..74")
    _fails(["rcn", "train", "--out", str(tmp_path)], capsys, "is a folder; expected a file path")
    (tmp_path / "file").write_text("x")
    _fails(["demo", "--out", str(tmp_path / "file")], capsys, "--out", "is a file; expected a folder")
