"""Model families by name: ``family → (model class, config class)``."""

from __future__ import annotations

import difflib

from multilivi.models.base import ModelBase, ModelConfig
from multilivi.models.dmlivi import DMLIVI, DMLIVIConfig
from multilivi.models.livi import LIVI, LIVIConfig
from multilivi.models.mslivi import MultiSLIVI, MultiSLIVIConfig

FAMILIES: dict[str, tuple[type[ModelBase], type[ModelConfig]]] = {
    "livi": (LIVI, LIVIConfig),
    "mslivi": (MultiSLIVI, MultiSLIVIConfig),
    "dmlivi": (DMLIVI, DMLIVIConfig),
}


def get_family(name: str) -> tuple[type[ModelBase], type[ModelConfig]]:
    """The (model class, config class) of a family, with a "did you mean" error for unknown names."""
    if name in FAMILIES:
        return FAMILIES[name]
    close = difflib.get_close_matches(name, FAMILIES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown model family {name!r}{hint}; known: {', '.join(FAMILIES)}")


def model_class(name: str) -> type[ModelBase]:
    """The model class of a family (see :func:`get_family`)."""
    return get_family(name)[0]


def config_class(name: str) -> type[ModelConfig]:
    """The config class of a family (see :func:`get_family`)."""
    return get_family(name)[1]
