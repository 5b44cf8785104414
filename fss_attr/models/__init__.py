"""Model adapters: the protocol (MatchingAdapter) and the adapters fss_attr ships."""
from fss_attr.models.base import MatchingAdapter

__all__ = ["MatchingAdapter", "LiteMatcher"]


def __getattr__(name):
    if name == "LiteMatcher":  # imported lazily: it loads torchvision-free but heavy backbone code
        from fss_attr.models.lite_matcher import LiteMatcher
        return LiteMatcher
    raise AttributeError(name)
