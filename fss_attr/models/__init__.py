"""Model adapters: the protocol (MatchingAdapter) and the adapters fss_attr ships."""
from fss_attr.models.base import MatchingAdapter

__all__ = ["MatchingAdapter"]
