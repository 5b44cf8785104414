"""Model adapters: the protocol (MatchingAdapter) and the adapters fss_attr ships."""
from fss_attr.models.base import MatchingAdapter

__all__ = ["MatchingAdapter", "FeatureMatcher", "LiteMatcher"]


def __getattr__(name):
    if name == "FeatureMatcher":
        from fss_attr.models.generic import FeatureMatcher
        return FeatureMatcher
    if name == "LiteMatcher":  # imported lazily (backbone code)
        from fss_attr.models.lite_matcher import LiteMatcher
        return LiteMatcher
    raise AttributeError(name)
