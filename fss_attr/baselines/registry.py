"""``make_explainer(name, **kw)``: every explainer by name, AffEx variants included."""
from __future__ import annotations

from fss_attr.affex.explainer import AffinityExplainer
from fss_attr.baselines.gradients import DeepLift, GradientShap, IntegratedGradients, Saliency
from fss_attr.baselines.lime import Lime
from fss_attr.baselines.pair import BlurIG, GuidedIG, XRAI
from fss_attr.baselines.simple import GaussNoise, Random

BASELINES = {"random": Random, "gaussnoise": GaussNoise, "saliency": Saliency, "ig": IntegratedGradients,
             "deeplift": DeepLift, "gradientshap": GradientShap, "lime": Lime,
             "guidedig": GuidedIG, "blurig": BlurIG, "xrai": XRAI}
AFFEX = ("affex-unmasked", "affex-masked", "affex-signed")
EXPLAINERS = tuple(BASELINES) + AFFEX
ALIASES = {"integrated-gradients": "ig", "integratedgradients": "ig", "gradient-shap": "gradientshap",
           "gauss-noise": "gaussnoise", "unmasked": "affex-unmasked", "masked": "affex-masked",
           "signed": "affex-signed", "guided-ig": "guidedig", "blur-ig": "blurig"}


# Python modules each explainer imports when it runs, and their PyPI names (all in the "baselines" extra)
REQUIRES = {"lime": ("sklearn", "skimage"), "ig": ("captum",), "gradientshap": ("captum",),
            "guidedig": ("saliency",), "blurig": ("saliency",), "xrai": ("saliency",)}
PYPI = {"sklearn": "scikit-learn", "skimage": "scikit-image", "captum": "captum", "saliency": "saliency"}


def check_requirements(name: str) -> None:
    """Raise ModuleNotFoundError naming the packages explainer ``name`` needs and lacks (before it runs)."""
    import importlib.util

    missing = [PYPI[m] for m in REQUIRES.get(name, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise ModuleNotFoundError(f"explainer {name!r} needs {', '.join(missing)}: pip install {' '.join(missing)} "
                                  "(or fss_attr[baselines])")


def make_explainer(name: str, **kw):
    """An explainer by name; every one answers ``explain(model, episode, region=...) -> fss_attr.Explanation``
    (``maps`` [B, N, H, W]).

    Names: "affex-unmasked", "affex-masked", "affex-signed" (:class:`fss_attr.AffinityExplainer`; ``kw`` go
    to its constructor), "saliency", "ig", "deeplift", "gradientshap", "lime", "random", "gaussnoise"
    (``kw`` go to the baseline's constructor). Case-insensitive.

    Raises:
        ValueError: an unknown name or a bad option; ModuleNotFoundError: a package the explainer needs is not
            installed (:data:`REQUIRES`).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = ALIASES.get(name.lower(), name.lower())
    if key in AFFEX:
        return AffinityExplainer(variant=key.split("-", 1)[1], **kw)
    if key not in BASELINES:
        raise ValueError(f"unknown explainer {name!r}; known: {', '.join(EXPLAINERS)}")
    check_requirements(key)
    return BASELINES[key](**kw)
