"""Episode lists in the AffEx paper's official data_csv format and --fold all (issue 16, item 2)."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from fss_attr.cli import main
from fss_attr.data.benchmarks import open_source, read_any_episode_list
from fss_attr.data.episode_list import EpisodeSpec, sample_episodes, save_episode_list
from fss_attr.data.official_lists import is_official_list, read_official_list, write_official_list
from fss_attr.evaluation.episodes import benchmark_episodes


def voc(root, n=6):
    """PASCAL fixture: images 2008_00000i, class 6 (bus, fold 1) in even images, 12 (dog, fold 2) in odd ones,
    a 1-px 255 band around each object."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClassAug").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        name = f"2008_{i:06d}"
        Image.fromarray(rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        label = np.zeros((36, 40), np.uint8)
        label[4:30, 4:34] = 255
        label[5:29, 5:33] = 6 if i % 2 == 0 else 12
        Image.fromarray(label).save(root / "SegmentationClassAug" / f"{name}.png")
    return root


def official_pascal_csv(path, rows):
    """rows: (class, [query, support...]) written exactly as the paper's data_csv files are."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_MINIMAL)
        w.writerow(["image_ids", "classes"])
        for cls, ids in rows:
            w.writerow([repr([[(i, f"/SegmentationClass/{i}.png") for i in ids]]), repr([[[cls] for _ in ids]])])
    return path


def test_a_paper_pascal_row_is_read_query_first(tmp_path):
    path = tmp_path / "val_pascal5i_N1K2.csv"
    path.write_text('image_ids,classes\n'
                    '"[[(\'2008_006554\', \'/SegmentationClass/2008_006554.png\'), (\'2007_000663\', '
                    '\'/SegmentationClass/2007_000663.png\'), (\'2009_004590\', \'/SegmentationClass/2009_004590.png\')]]",'
                    '"[[[6], [6], [6]]]"\n')
    assert is_official_list(path)
    assert read_official_list(path, "pascal") == [EpisodeSpec(6, "2008_006554", ("2007_000663", "2009_004590"))]


def test_a_paper_coco_row_maps_category_ids_to_indices(tmp_path):
    path = tmp_path / "val_coco20i_N1K1.csv"
    path.write_text('image_ids,classes\n"[[400851, 414578]]","[[[15], [15]]]"\n"[[225495, 435562]]","[[[32], [32]]]"\n')
    coco_ids = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]   # COCO's 80 ids
    assert len(coco_ids) == 80
    specs = read_official_list(path, "coco", coco_ids)
    # COCO id 15 (bench) is index 13, id 32 (tie) is index 27 in the sorted ids
    assert specs == [EpisodeSpec(13, "400851", ("414578",)), EpisodeSpec(27, "225495", ("435562",))]
    out = tmp_path / "again.csv"
    write_official_list(specs, out, "coco", coco_ids)
    assert read_official_list(out, "coco", coco_ids) == specs


@pytest.mark.parametrize("text, needle", [
    ('image_ids,classes\n"[[(\'a\', \'p\'), (\'b\', \'p\')]]","[[[6], [7]]]"\n', "one class"),
    ('image_ids,classes\n"[[(\'a\', \'p\'), (\'b\', \'p\')]]","__import__(\'os\')"\n', "not a Python literal"),
    ('image_ids,classes\n"[[(\'a\', \'p\'), (\'b\', \'p\')]]","[[[21], [21]]]"\n', "not a VOC label"),
    ('image_ids,classes\n"[[(\'a\', \'p\')]]","[[[6]]]"\n', "needs a query and at least one support"),
])
def test_bad_official_rows_name_the_file_and_row(tmp_path, text, needle):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=needle) as e:
        read_official_list(path, "pascal")
    assert str(path) in str(e.value) and "row 2" in str(e.value)


def test_both_formats_give_the_same_episodes(tmp_path):
    root = voc(tmp_path / "VOC")
    specs = [EpisodeSpec(6, "2008_000000", ("2008_000002", "2008_000004")),
             EpisodeSpec(12, "2008_000001", ("2008_000003", "2008_000005"))]
    ours, paper = tmp_path / "ours.csv", tmp_path / "paper.csv"
    save_episode_list(specs, ours)
    official_pascal_csv(paper, [(s.class_id, [s.query, *s.supports]) for s in specs])
    src = open_source("pascal", root, "all")
    assert read_any_episode_list(ours, "pascal", src) == read_any_episode_list(paper, "pascal", src) == specs
    eps, _ = benchmark_episodes("pascal", root, "all", 2, 0, 2, (32, 32), paper)
    ep = eps[1]
    assert ep.meta["class_id"] == 12 and ep.query_ignore is not None and ep.query_ignore.any()
    # classes of two folds: a fold-0 run refuses the list, naming the fold
    with pytest.raises(ValueError, match="not a class of pascal fold 1"):
        benchmark_episodes("pascal", root, 1, 2, 0, 2, (32, 32), paper)


def test_fold_all_samples_over_every_class(tmp_path):
    root = voc(tmp_path / "VOC", n=8)
    src = open_source("pascal", root, "all")
    assert src.classes == list(range(1, 21))
    classes = {s.class_id for s in sample_episodes(src, 8, 2, seed=0)}
    assert classes == {6, 12}                       # bus (fold 1) and dog (fold 2) in one run
    assert {c for _, c in open_source("pascal", root, 1).image_class_pairs()} == {6}


def test_cli_replays_an_official_list_over_all_classes(tmp_path, capsys):
    root = voc(tmp_path / "VOC")
    paper = official_pascal_csv(tmp_path / "paper.csv", [(6, ["2008_000000", "2008_000002"]),
                                                         (12, ["2008_000001", "2008_000003"])])
    out = tmp_path / "out"
    assert main(["evaluate", "--dataset", "pascal", "--root", str(root), "--episode-list", str(paper),
                 "--shots", "1", "--size", "32", "--episodes", "2", "--explainers", "random", "--metrics", "miou",
                 "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["fold"] == "all"
    rows = list(csv.DictReader(open(out / "episodes.csv")))
    assert len(rows) == 2
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--dataset", "pascal", "--root", str(root), "--fold", "x"])
    assert e.value.code == 2 and "must be a fold number or 'all'" in capsys.readouterr().err
