"""The kinds of spec ``--models`` takes, in one registry: a new kind is one new module of this package.

A :class:`SpecKind` recognises its spec strings (:meth:`~SpecKind.matches`) and parses them into a
:class:`Spec`; the spec is validated against the cohort before anything trains
(:meth:`Spec.prepare`), which yields an :class:`Entry` that describes itself for the run summary
and computes its :class:`~multilivi.eval.outputs.ModelOutputs` (training, or reading the cache).

Every module of this package is imported with it; a module defining a kind calls :func:`register`.
The built-in kinds: ``family`` (livi, mslivi, dmlivi: trained here), ``embedding`` (``emb:``, a
precomputed embedding), ``pca`` (the PCA baseline), ``control`` (the random and truth controls) and
``scvi-tools`` (``totalvi`` and ``scvi``, trained here with the optional scvi-tools).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from multilivi.data import Cohort
from multilivi.eval.outputs import ModelOutputs


class Spec(Protocol):
    """A parsed spec: its text, its display name (filesystem-safe) and its validation."""

    raw: str

    @property
    def name(self) -> str: ...

    def prepare(self, cohort: Cohort, *, preset: str, seed: int) -> Entry: ...


class SpecKind(ABC):
    """One kind of spec: which strings it claims and how it parses them.

    A ``fallback`` kind is tried after every other kind: the model families read any spec no other
    kind claims, so a mistyped spec gets the family grammar's "did you mean".
    """

    name: ClassVar[str]
    fallback: ClassVar[bool] = False

    @abstractmethod
    def matches(self, raw: str) -> bool:
        """Whether ``raw`` is a spec of this kind."""

    @abstractmethod
    def parse(self, raw: str) -> Spec:
        """The parsed spec; a ValueError naming the fix when ``raw`` is malformed."""


@dataclass
class Entry(ABC):
    """A spec validated against a cohort: ready to compute, or skipped with the reason."""

    spec: Spec
    skip_reason: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The run summary's description: ``family`` (the kind or model family) and its settings."""

    @abstractmethod
    def outputs(
        self,
        cohort: Cohort,
        train_idx: np.ndarray,
        heldout_idx: np.ndarray,
        *,
        seed: int,
        cache_dir: Path | None,
        progress: bool = True,
    ) -> ModelOutputs:
        """The outputs on ``cohort``, with their provenance (``cached``, ``config``, timings)."""


KINDS: dict[str, SpecKind] = {}
"""Registered kinds by name."""


def register(kind: SpecKind) -> SpecKind:
    """Add ``kind`` to the registry (a ValueError when its name is taken)."""
    if kind.name in KINDS:
        raise ValueError(f"a spec kind named {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


def resolve(raw: str) -> Spec:
    """Parse ``raw`` with the one kind that claims it (the fallback kind when none does)."""
    claimed = [k for k in KINDS.values() if not k.fallback and k.matches(raw)]
    if len(claimed) > 1:
        raise ValueError(f"spec {raw!r} is claimed by several kinds: {[k.name for k in claimed]}")
    fallback = [k for k in KINDS.values() if k.fallback and k.matches(raw)]
    kind = (claimed or fallback or [None])[0]
    if kind is None:
        raise ValueError(f"no spec kind reads {raw!r}; kinds: {', '.join(KINDS)}")
    return kind.parse(raw)


def safe_name(text: str) -> str:
    """``text`` as a filesystem-safe name: runs of other characters than ``A-Za-z0-9._-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
