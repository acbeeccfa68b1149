"""The trace viewer: `baobab ui` serves it over a store, `export_html` writes one run as a shareable file.

>>> from baobab.ui import create_app, export_html  # doctest: +SKIP
>>> export_html(Store("sqlite:///.baobab/baobab.db"), "thread:t1", "t1.html")  # doctest: +SKIP
"""

from typing import Any

__all__ = ["create_app", "export_html"]


def __getattr__(name: str) -> Any:
    """Import lazily: starlette loads only when the viewer is used."""
    if name == "create_app":
        from baobab.ui.app import create_app

        return create_app
    if name == "export_html":
        from baobab.ui.export import export_html

        return export_html
    raise AttributeError(f"module 'baobab.ui' has no attribute {name!r}")
