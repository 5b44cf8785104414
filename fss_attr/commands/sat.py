"""``fss-attr sat``: the Segment Attribution Table demonstration (a planted cue, a cued and a clean probe)."""
from __future__ import annotations

import json
from pathlib import Path

NAME = "sat"
HELP = ("Segment Attribution Tables on controlled images with a planted cue: fit a linear probe on "
        "EfficientNet-Lite0 features with and without the cue, explain both, tabulate the saliency over "
        "{object, background, cue}; writes CSV tables and two PNG pictures (offline)")


def add_arguments(parser):
    from fss_attr.backbones.efficientnet import MIN_IMAGE_SIDE
    from fss_attr.data.controlled import CLASSES, CUES
    from fss_attr.sat.cue_study import EXPLAINERS, CueStudy
    from fss_attr.validation import option_int

    d = CueStudy()
    parser.add_argument("--classes", default=",".join(d.classes),
                        help=f"comma list from {','.join(CLASSES)}; the first carries the cue (default "
                             f"{','.join(d.classes)})")
    parser.add_argument("--cue", default=d.cue, choices=CUES, help=f"planted cue (default {d.cue})")
    parser.add_argument("--train-per-class", type=option_int(1), default=d.train_per_class,
                        help=f"training images per class (default {d.train_per_class})")
    parser.add_argument("--test-per-class", type=option_int(1), default=d.test_per_class,
                        help=f"test images per class (default {d.test_per_class})")
    parser.add_argument("--size", type=option_int(MIN_IMAGE_SIDE, what="EfficientNet-Lite0's smallest input"),
                        default=d.size, help=f"image side in pixels, >= {MIN_IMAGE_SIDE} (default {d.size})")
    parser.add_argument("--block", type=option_int(0, 15), default=d.block,
                        help=f"EfficientNet-Lite0 block whose feature map the probe pools (default {d.block})")
    parser.add_argument("--distractors", type=option_int(0), default=d.n_distractors,
                        help=f"distractor objects per image (default {d.n_distractors})")
    parser.add_argument("--explainers", default=",".join(d.explainers),
                        help=f"comma list of {','.join(EXPLAINERS)}; the first is pictured (default "
                             f"{','.join(d.explainers)})")
    parser.add_argument("--seed", type=option_int(0), default=d.seed, help=f"random seed (default {d.seed})")
    parser.add_argument("--out", default="outputs/sat", help="output folder (default outputs/sat)")
    parser.add_argument("--threads", type=option_int(0), default=0,
                        help="torch CPU threads (default: torch's choice; 1 is faster on an oversubscribed CPU)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    import torch

    from fss_attr.data.controlled import CLASSES
    from fss_attr.sat.cue_study import EXPLAINERS, HEADLINE_COLUMNS, CueStudy, run_cue_study, write_cue_study
    from fss_attr.sat.table import plain_table
    from fss_attr.validation import OptionError, check_output_folder, option_list

    classes = option_list("--classes", args.classes, CLASSES)
    explainers = option_list("--explainers", args.explainers, EXPLAINERS)
    check_output_folder("--out", args.out)
    try:
        study = CueStudy(classes=classes, cue=args.cue, train_per_class=args.train_per_class,
                         test_per_class=args.test_per_class, size=args.size, block=args.block,
                         n_distractors=args.distractors, explainers=explainers, seed=args.seed)
    except (TypeError, ValueError) as e:
        raise OptionError(str(e)) from None
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_cue_study(study, progress=not args.no_progress)
    out = Path(args.out)
    paths = write_cue_study(result, out)
    report = result.to_dict() | {"paths": {k: str(v) for k, v in paths.items()},
                                 "torch_threads": torch.get_num_threads()}
    (out / "sat.json").write_text(json.dumps(report, indent=2))
    n_test = study.test_per_class * len(study.classes)
    print(f"cue '{study.cue}' on class '{study.cue_class}'; {study.train_per_class * len(study.classes)} training "
          f"and {n_test} test images of {study.size}x{study.size}; probes on EfficientNet-Lite0 block {study.block}")
    print(f"shares: mean over the {study.test_per_class} '{study.cue_class}' test images (all with the cue); "
          f"accuracies over {n_test} test images each")
    print(plain_table(result.headline, HEADLINE_COLUMNS, digits=3), end="")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()))
    for name, path in paths.items():
        print(f"{name}: {path}")
    print(f"report: {out / 'sat.json'}")
    return 0
