"""The model families trained here (livi, mslivi, dmlivi): spec grammar, effective config, training, cache.

Grammar (DESIGN.md §5)::

    family[-W][:key=value,...]

``family`` is ``livi``, ``mslivi`` or ``dmlivi``; ``W`` is λ_prot, the protein reconstruction weight
(``prot_weight``; an error for ``livi``, which has no protein); each ``key=value`` overrides a field
of the family's config dataclass, coerced by the field's type: int, float, bool
(true/false/1/0/yes/no), str, a Literal's allowed values, and ``tuple[int, ...]`` written with
slashes (``encoder_hidden=256/128``; commas separate overrides). ``name=NAME`` is not a config
field: it sets the display name, e.g. to check a changed model against the baseline of the model it
replaces (``livi:n_latent=2,name=livi``). Examples: ``livi``, ``mslivi-50``,
``dmlivi-100:interaction_input=all,n_dxc=20,lr=1e-3``.

Trained models are cached by (model code, family, effective config, cohort data hash, held-out
split; the seed is in the config): a second identical run trains nothing, and a run interrupted
while a model trains resumes with the models already finished.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import logging
import re
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import numpy as np
import pandas as pd
from scipy.special import expit

import multilivi.models as models_package
from benchmarks.kinds import Entry, SpecKind, register, safe_name
from benchmarks.kinds.store import (
    code_hash,
    read_cached,
    write_cache_entry,
    write_outputs,
)
from benchmarks.presets import DEFAULT_PRESET, preset_config
from multilivi.data import Cohort
from multilivi.eval.outputs import ModelOutputs
from multilivi.models import ModelBase, ModelConfig
from multilivi.models.registry import FAMILIES, config_class, model_class

logger = logging.getLogger(__name__)

_FAMILY_SPEC = re.compile(r"^(?P<family>[^-:]+)(?:-(?P<weight>[^:]*))?(?::(?P<overrides>.*))?$")
_WEIGHT_FIELD = "prot_weight"
_NAME_OPTION = "name"  # the display name, not a config field
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
UNCACHED_FIELDS = ("progress",)  # config fields that do not change the trained model


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model-family spec.

    Attributes
    ----------
    raw
        The spec as written (the display name).
    family
        Registry name of the family.
    weight
        λ_prot from the ``-W`` suffix, or None.
    overrides
        ``(field, typed value)`` pairs in the order written.
    label
        The ``name=`` option, or None (the display name is then derived from ``raw``).
    """

    raw: str
    family: str
    weight: float | None
    overrides: tuple[tuple[str, Any], ...]
    label: str | None = None

    @property
    def name(self) -> str:
        """Filesystem-safe display name (the model's folder in a run directory)."""
        return safe_name(self.label if self.label is not None else self.raw.replace("=", "-"))

    def prepare(self, cohort: Cohort, *, preset: str, seed: int) -> FamilyEntry:
        """Build the effective config (bad overrides raise); skip a family whose modality is missing.

        Counts on disk are streamed in block-shuffled minibatches: ``shuffle="blocks"`` unless the spec
        sets ``shuffle`` itself (``shuffle=cells`` then fails at fit, naming the fix).
        """
        config = build_config(self, preset, seed=seed)
        if cohort.on_disk and "shuffle" not in dict(self.overrides):
            config = dataclasses.replace(config, shuffle="blocks")
        missing = [m for m in model_class(self.family).modalities if m not in cohort.modalities]
        reason = (
            f"{self.family} needs modality {missing[0]!r}, which cohort {cohort.name!r} lacks"
            if missing
            else ""
        )
        return FamilyEntry(self, reason, config=config)


@dataclass
class FamilyEntry(Entry):
    """A model family spec with its effective config."""

    spec: ModelSpec
    config: ModelConfig = field(kw_only=True)

    def describe(self) -> dict[str, Any]:
        return {"family": self.spec.family, "config": asdict(self.config)}

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
        """Read the model's outputs from the cache, or train it (and cache it when ``cache_dir`` is set)."""
        config = asdict(self.config)
        key = cache_key(self, cohort, heldout_idx)
        folder = None if cache_dir is None else Path(cache_dir) / f"{self.name}-{key}"
        cached = None if folder is None else read_cached(folder)
        if cached is not None:
            logger.info("%s: loaded from the cache (%s)", self.name, folder)
            if cached.loadings is None and (folder / "model.pt").exists():  # an entry older than loadings
                loadings, assignment = interpretation(model_class(self.spec.family).load(folder / "model.pt"))
                cached = dataclasses.replace(cached, loadings=loadings, assignment=assignment)
            return dataclasses.replace(cached, config=config)
        model = model_class(self.spec.family)(dataclasses.replace(self.config, progress=progress))
        logger.info("%s: training on %d cells", self.name, len(train_idx))
        model.fit(cohort, train_idx)
        outputs = trained_outputs(model, cohort, heldout_idx, config)
        if folder is not None:
            write_cache_entry(folder, functools.partial(_write_entry, model, outputs))
        return outputs


def _write_entry(model: ModelBase, outputs: ModelOutputs, folder: Path) -> None:
    """A cache entry: the checkpoint (``model.pt``, loadable with the family's ``load``) and the outputs."""
    model.save(folder / "model.pt")
    write_outputs(folder, outputs)


def trained_outputs(
    model: ModelBase, cohort: Cohort, heldout_idx: np.ndarray, config: dict[str, Any]
) -> ModelOutputs:
    """The outputs of a fitted model: views, donor factors, held-out NLL, timings, history, loadings, σ(A)."""
    loadings, assignment = interpretation(model)
    return ModelOutputs(
        views=model.views(cohort, np.arange(cohort.n_cells)),
        donor_factors=model.donor_factors(),
        heldout_nll=model.reconstruction_nll(cohort, heldout_idx),
        fit_seconds=float(model.fit_seconds_),
        seconds_per_epoch=float(model.fit_seconds_) / max(1, len(model.history_)),
        history=pd.DataFrame(model.history_).rename_axis("epoch"),
        config=config,
        loadings=loadings,
        assignment=assignment,
    )


def interpretation(model: ModelBase) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """What programs are read from: D x C loadings per modality and σ(A).

    Returns
    -------
    loadings
        Modality → (n_features, n_dxc) decoder loadings, BatchNorm scale folded in (``model.loadings``).
    assignment
        (n_state_dims, n_dxc) σ(A), rows named like the cell-state view's columns.
    """
    factors = model.donor_factors()["D"].columns
    loadings = {m: model.loadings()[f"{m}/DxC"].set_axis(factors, axis=1) for m in model.modalities}
    logits = model.module_.donor.assign_logits.detach().cpu().numpy().astype(np.float64)
    names = state_dim_names(model.config_, logits.shape[0])
    return loadings, pd.DataFrame(expit(logits), index=pd.Index(names, name="state"), columns=factors)


def state_dim_names(config: ModelConfig, n_state: int) -> list[str]:
    """Names of the ``n_state`` rows of A: ``c_j``, then (DMLIVI, ``interaction_input="all"``) ``s_<m>_j``."""
    names = [f"c_{j}" for j in range(config.n_latent)]
    if n_state > len(names):
        names += [f"s_rna_{j}" for j in range(config.n_rna_specific)]
        names += [f"s_prot_{j}" for j in range(config.n_prot_specific)]
    if len(names) != n_state:
        raise ValueError(f"A has {n_state} rows but the config names {len(names)} cell-state dimensions")
    return names


def cache_key(entry: FamilyEntry, cohort: Cohort, heldout_idx: np.ndarray) -> str:
    """Hash of (model code, family, config, data hash, held-out split); the seed is in the config."""
    config = {k: v for k, v in asdict(entry.config).items() if k not in UNCACHED_FIELDS}
    payload = {
        "code": code_hash(models_package),
        "family": entry.spec.family,
        "config": config,
        "data": cohort.data_hash,
        "heldout": hashlib.sha256(np.asarray(heldout_idx, dtype=np.int64).tobytes()).hexdigest()[:16],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------- grammar
class FamilyKind(SpecKind):
    """Model family specs: every spec no other kind claims (so a typo meets the family "did you mean")."""

    name = "family"
    fallback = True

    def matches(self, raw: str) -> bool:
        return True

    def parse(self, raw: str) -> ModelSpec:
        return parse_family_spec(raw)


def parse_family_spec(raw: str) -> ModelSpec:
    """Parse ``family[-W][:key=value,...]``; every problem is a ValueError naming the fix."""
    match = _FAMILY_SPEC.match(raw.strip())
    if match is None:
        raise ValueError(
            f"cannot parse model spec {raw!r}; expected family[-W][:key=value,...], e.g. 'mslivi-50:n_dxc=20'"
        )
    family = match["family"]
    if family not in FAMILIES:
        close = difflib.get_close_matches(
            raw.split(":")[0], [*FAMILIES, *(f"{f}-50" for f in FAMILIES if f != "livi")], n=1
        )
        close = close or difflib.get_close_matches(family, FAMILIES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"unknown model family {family!r} in spec {raw!r}; {hint}known: {', '.join(FAMILIES)}"
        )
    cls = config_class(family)
    weight = None if match["weight"] is None else _weight(raw, family, match["weight"], cls)
    options = _parse_overrides(raw, match["overrides"], cls)
    label = dict(options).get(_NAME_OPTION)
    overrides = tuple((k, v) for k, v in options if k != _NAME_OPTION)
    if weight is not None and any(k == _WEIGHT_FIELD for k, _ in overrides):
        raise ValueError(f"spec {raw!r} sets {_WEIGHT_FIELD} twice (-W and {_WEIGHT_FIELD}=); keep one")
    return ModelSpec(raw=raw.strip(), family=family, weight=weight, overrides=overrides, label=label)


def _weight(raw: str, family: str, text: str, cls: type[ModelConfig]) -> float:
    """λ_prot of the ``-W`` suffix."""
    if _WEIGHT_FIELD not in {f.name for f in dataclasses.fields(cls)}:
        raise ValueError(
            f"spec {raw!r}: the -W suffix sets λ_prot, the protein reconstruction weight, but {family!r} "
            "models RNA only; drop the suffix or use mslivi-W / dmlivi-W"
        )
    weight = _coerce(f"{raw!r}: -W", text, float)
    if not weight >= 0:
        raise ValueError(f"spec {raw!r}: λ_prot must be >= 0, got {weight}")
    return weight


def build_config(spec: ModelSpec, preset: str = DEFAULT_PRESET, *, seed: int | None = None) -> ModelConfig:
    """The effective config: the preset's, then ``seed`` (when given), then ``-W``, then the overrides."""
    config = preset_config(spec.family, preset)
    changes: dict[str, Any] = {} if seed is None else {"seed": seed}
    if spec.weight is not None:
        changes[_WEIGHT_FIELD] = spec.weight
    changes.update(dict(spec.overrides))
    try:
        return dataclasses.replace(config, **changes)
    except ValueError as error:
        raise ValueError(f"spec {spec.raw!r} with preset {preset!r}: {error}") from None


def _parse_overrides(raw: str, text: str | None, cls: type[ModelConfig]) -> tuple[tuple[str, Any], ...]:
    if text is None:
        return ()
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    out: list[tuple[str, Any]] = []
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise ValueError(f"spec {raw!r}: override {item!r} is not key=value")
        if key == _NAME_OPTION:
            if not value:
                raise ValueError(f"spec {raw!r}: name= needs a value, e.g. name=livi-small")
            out.append((key, value))
            continue
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=3)
            hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
            raise ValueError(
                f"spec {raw!r}: unknown config key {key!r}; {hint}valid keys: {', '.join(valid)} "
                "(and name=NAME)"
            )
        if key in dict(out):
            raise ValueError(f"spec {raw!r} sets {key!r} twice")
        out.append((key, _coerce(f"spec {raw!r}: {key}", value, hints[key])))
    return tuple(out)


def _coerce(where: str, value: str, annotation: Any) -> Any:
    """Convert ``value`` to the type ``annotation`` (int, float, bool, str, Literal, tuple[int, ...])."""
    origin = get_origin(annotation)
    if origin is Literal:
        allowed = get_args(annotation)
        if value not in allowed:
            close = difflib.get_close_matches(value, [str(a) for a in allowed], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{where} must be one of {list(allowed)}, got {value!r}{hint}")
        return value
    if origin is tuple:
        item = get_args(annotation)[0]
        try:
            return tuple(item(v) for v in value.strip("()").split("/") if v)
        except ValueError:
            raise ValueError(
                f"{where} must be {item.__name__}s separated by '/', e.g. 256/128; got {value!r}"
            ) from None
    if annotation is bool:
        if value.lower() not in _TRUE | _FALSE:
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value.lower() in _TRUE
    if annotation in (int, float, str):
        try:
            return annotation(value)
        except ValueError:
            raise ValueError(f"{where} must be {annotation.__name__}, got {value!r}") from None
    raise TypeError(f"{where}: no string conversion for type {annotation!r}")


register(FamilyKind())
