"""fss-attr evaluate --model … --checkpoint … --preset paper (issue 16, items 1 and 6, and its Done-when test)."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from fss_attr.cli import main
from fss_attr.commands.evaluate import TABLE_A, paper_preset
from fss_attr.models.registry import official_keys


def fake_state_dict(name, path, seed=0):
    """A state dict with the official keys, shapes and dtypes of ``name`` (the committed key list), random values."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, (shape, dtype) in official_keys(name).items():
        if not dtype.is_floating_point:
            state[key] = torch.zeros(shape, dtype=dtype)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean") or key.endswith("bias"):
            state[key] = 0.05 * torch.randn(shape, generator=g)
        elif key.endswith(".weight") and len(shape) == 1:                      # norm scales
            state[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            state[key] = torch.randn(shape, generator=g) * (1.0 / fan_in) ** 0.5
        state[key] = state[key].to(dtype)
    torch.save(state, path)
    return path


def voc_with_band(root, n=6, side=40):
    """PASCAL fixture: n images of class 6 (bus), each object with a 2-px 255 band."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClassAug").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        name = f"2008_{i:06d}"
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        label = np.zeros((side, side), np.uint8)
        y, x = 4 + i % 5, 6 + (2 * i) % 7
        label[y:y + 24, x:x + 24] = 255
        label[y + 2:y + 22, x + 2:x + 22] = 6
        Image.fromarray(label).save(root / "SegmentationClassAug" / f"{name}.png")
    return root


def official_csv(path, episodes):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_ids", "classes"])
        for ids in episodes:
            w.writerow([repr([[(i, f"/SegmentationClass/{i}.png") for i in ids]]), repr([[[6] for _ in ids]])])
    return path


def test_the_paper_preset():
    p = paper_preset("dmtnet")
    assert p["shot_fusion"] == "max" and p["size"] == 400 and p["shots"] == 5 and p["episodes"] == 1000
    assert p["explainers"].split(",") == list(TABLE_A) and p["steps"] == 75 and p["seed"] == 42
    assert paper_preset("dcama-swin")["size"] == 384 and paper_preset("dcama-swin")["shot_fusion"] is None


@pytest.mark.parametrize("argv, needle", [
    (["--model", "dcama-resnet50"], "needs --checkpoint PATH"),
    (["--model", "dcama-resnet50", "--random-weights", "--size", "48"], "multiple of 32"),
    (["--model", "dcama-swin", "--random-weights", "--size", "64"], "384"),
    (["--model", "dmtnet", "--random-weights", "--size", "64"], "at least 97"),
    (["--model", "lite", "--checkpoint", "x.pt"], "does not apply to --model lite"),
    (["--model", "hsnet", "--checkpoint", "nowhere.pt"], "no such file"),
])
def test_bad_model_options_exit_2_before_anything_loads(argv, needle, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["evaluate", *argv, "--episodes", "1", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()


def test_a_checkpoint_of_another_model_is_refused(tmp_path, capsys):
    ckpt = fake_state_dict("hsnet", tmp_path / "hsnet.pt")
    out = tmp_path / "out"
    assert main(["evaluate", "--model", "dcama-resnet50", "--checkpoint", str(ckpt), "--size", "32",
                 "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "not a dcama-resnet50 checkpoint" in err and str(ckpt) in err and not out.exists()


def test_done_when_dcama_resnet50_paper_preset_on_an_official_pascal_list(tmp_path, capsys):
    """The issue's Done-when run: a generated PASCAL fixture with a 255 band, an official-format CSV, a
    DCAMA-ResNet-50 state dict built from the committed key list, --preset paper, 2 episodes: every explainer
    of Table A runs and the table is written. Kept tiny: 32 px (the smallest side DCAMA-ResNet-50 takes), 2
    steps, 2 IG / Guided IG / Blur IG / XRAI steps, 4 LIME samples (options given explicitly win over the preset)."""
    root = voc_with_band(tmp_path / "VOC")
    ids = [f"2008_{i:06d}" for i in range(6)]
    lst = official_csv(tmp_path / "val_pascal5i_N1K5.csv", [ids, ids[1:] + ids[:1]])
    ckpt = fake_state_dict("dcama-resnet50", tmp_path / "dcama_resnet50.pt")
    out = tmp_path / "out"
    rc = main(["evaluate", "--model", "dcama-resnet50", "--checkpoint", str(ckpt), "--dataset", "pascal",
               "--root", str(root), "--episode-list", str(lst), "--preset", "paper", "--episodes", "2",
               "--size", "32", "--steps", "2", "--ig-steps", "2", "--lime-samples", "4", "--threads", "1",
               "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["model"] == "dcama-resnet50" and config["preset"] == "paper" and config["fold"] == "all"
    assert config["shots"] == 5 and config["explainers"] == list(TABLE_A)
    rows = list(csv.DictReader(open(out / "episodes.csv")))
    assert sorted({r["explainer"] for r in rows}) == sorted(TABLE_A) and len(rows) == 2 * len(TABLE_A)
    table = (out / "table.md").read_text()
    for col in ("IAUC", "DAUC", "Diff", "IAUC@1%", "mIoULoss@1%", "mIoULoss@5%"):
        assert col in table
    for name in ("Random", "GaussNoise", "Saliency", "IG", "GuidedIG", "BlurIG", "XRAI", "DeepLift", "LIME",
                 "AffEx Unmasked", "AffEx Masked", "AffEx Signed"):
        assert f"| {name} |" in table
    assert config["explainer_options"]["lime"]["settings"] == "paper"
    assert config["evaluation"]["empty_prediction"] == "paper"
