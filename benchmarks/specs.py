"""Model specs: the strings ``--models`` takes.

Model-family grammar (DESIGN.md §5)::

    family[-W][:key=value,...]

``family`` is ``livi``, ``mslivi`` or ``dmlivi``; ``W`` is λ_prot, the protein reconstruction weight
(``prot_weight``; an error for ``livi``, which has no protein); each ``key=value`` overrides a field
of the family's config dataclass, coerced by the field's type: int, float, bool
(true/false/1/0/yes/no), str, a Literal's allowed values, and ``tuple[int, ...]`` written with
slashes (``encoder_hidden=256/128``; commas separate overrides). ``name=NAME`` is not a config
field: it sets the display name, e.g. to check a changed model against the baseline of the model it
replaces (``livi:n_latent=2,name=livi``). Examples: ``livi``, ``mslivi-50``,
``dmlivi-100:interaction_input=all,n_dxc=20,lr=1e-3``.

Each spec kind has its own parser function; :func:`parse_spec` dispatches.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from benchmarks.presets import DEFAULT_PRESET, preset_config
from multilivi.models import ModelConfig
from multilivi.models.registry import FAMILIES, config_class

_FAMILY_SPEC = re.compile(r"^(?P<family>[^-:]+)(?:-(?P<weight>[^:]*))?(?::(?P<overrides>.*))?$")
_WEIGHT_FIELD = "prot_weight"
_NAME_OPTION = "name"  # the display name, not a config field
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


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
        text = self.label if self.label is not None else self.raw.replace("=", "-")
        return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def parse_spec(raw: str) -> ModelSpec:
    """Parse a spec string (model families are the only kind defined here)."""
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
    weight = None
    if match["weight"] is not None:
        if _WEIGHT_FIELD not in {f.name for f in dataclasses.fields(cls)}:
            raise ValueError(
                f"spec {raw!r}: the -W suffix sets λ_prot, the protein reconstruction weight, but {family!r} "
                "models RNA only; drop the suffix or use mslivi-W / dmlivi-W"
            )
        weight = _coerce(f"{raw!r}: -W", match["weight"], float)
        if not weight >= 0:
            raise ValueError(f"spec {raw!r}: λ_prot must be >= 0, got {weight}")
    options = _parse_overrides(raw, match["overrides"], cls)
    label = dict(options).get(_NAME_OPTION)
    overrides = tuple((k, v) for k, v in options if k != _NAME_OPTION)
    if weight is not None and any(k == _WEIGHT_FIELD for k, _ in overrides):
        raise ValueError(f"spec {raw!r} sets {_WEIGHT_FIELD} twice (-W and {_WEIGHT_FIELD}=); keep one")
    return ModelSpec(raw=raw.strip(), family=family, weight=weight, overrides=overrides, label=label)


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
                f"spec {raw!r}: unknown config key {key!r}; {hint}valid keys: {', '.join(valid)} (and name=NAME)"
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
