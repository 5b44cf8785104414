"""Model adapters: the protocol (MatchingAdapter) and the adapters fss_attr ships."""
from fss_attr.models.base import MatchingAdapter

__all__ = ["MatchingAdapter", "FeatureMatcher", "LiteMatcher", "DCAMA", "HSNet", "DMTNet"]


def __getattr__(name):
    if name == "FeatureMatcher":
        from fss_attr.models.generic import FeatureMatcher
        return FeatureMatcher
    if name == "LiteMatcher":  # imported lazily (backbone code)
        from fss_attr.models.lite_matcher import LiteMatcher
        return LiteMatcher
    if name in ("HSNet", "DMTNet"):
        from fss_attr.models import dmtnet, hsnet
        return hsnet.HSNet if name == "HSNet" else dmtnet.DMTNet
    if name == "DCAMA":
        from fss_attr.models.dcama import DCAMA
        return DCAMA
    raise AttributeError(name)
