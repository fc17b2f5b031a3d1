"""Where multilivi keeps downloaded datasets and trained models: one user cache folder."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$MULTILIVI_CACHE``, else ``$XDG_CACHE_HOME/multilivi``, else ``~/.cache/multilivi``.

    Datasets go to its ``datasets`` subfolder, the harness's trained models to ``models``.
    """
    if os.environ.get("MULTILIVI_CACHE"):
        return Path(os.environ["MULTILIVI_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "multilivi"
