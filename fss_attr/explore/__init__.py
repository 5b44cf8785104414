"""``fss-attr explore``: an interactive page over AffEx — point at the query, see the support evidence, and the
other way round.

- :mod:`fss_attr.explore.session`: :class:`ExplorerSession`, the per-episode caches and the computations
  (region → support maps, support pixel → query matches), with validation (:class:`ExplorerError`);
- :mod:`fss_attr.explore.server`: :func:`create_app`, the starlette ASGI app serving the page (``static/``)
  and its JSON API.
"""
from fss_attr.explore.session import ExplorerError, ExplorerSession, controlled_source

__all__ = ["ExplorerSession", "ExplorerError", "controlled_source", "create_app"]


def __getattr__(name):
    if name == "create_app":  # starlette is imported only when the server is used
        from fss_attr.explore.server import create_app
        return create_app
    raise AttributeError(name)
