"""Controls scored through the same tasks as every model: ``control:random`` and ``control:truth``.

The negative control is a random Gaussian cell embedding and random donor factors of the shapes
LIVI has under the run's preset (``n_latent`` cell dims, ``n_dxc`` D and ``n_v`` V factors): its
probes and factor recovery sit at their chance levels, and its association finds only false hits.
The positive control, on a simulated cohort, is the truth itself (the true cell states as the cell
view, the true D and V factors as donor factors): the best any model can do on these data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from benchmarks.kinds import Entry, SpecKind, register
from benchmarks.presets import preset_config
from multilivi.data import Cohort
from multilivi.eval.outputs import ModelOutputs

PREFIX = "control:"
Control = Literal["random", "truth"]
CONTROLS: tuple[Control, ...] = ("random", "truth")


@dataclass(frozen=True)
class ControlSpec:
    """A control: ``random`` (negative) or ``truth`` (positive, simulated cohorts only)."""

    raw: str
    control: Control

    @property
    def name(self) -> str:
        return f"control-{self.control}"

    def prepare(self, cohort: Cohort, *, preset: str, seed: int) -> ControlEntry:
        config = preset_config("livi", preset)
        shape = {"n_latent": config.n_latent, "n_dxc": config.n_dxc, "n_v": config.n_v}
        skip = ""
        if self.control == "truth" and cohort.truth is None:
            skip = (
                f"the positive control needs the ground truth of a simulated cohort; {cohort.name!r} has none"
            )
        return ControlEntry(self, skip_reason=skip, shape=shape)


@dataclass
class ControlEntry(Entry):
    """A control prepared for a cohort: the shapes of the negative control's random draws."""

    spec: ControlSpec
    shape: dict[str, int] | None = None

    def describe(self) -> dict[str, Any]:
        settings = self.shape if self.spec.control == "random" else {"source": "simulated truth"}
        return {"family": ControlKind.name, "config": settings}

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
        if self.spec.control == "truth":
            return truth_outputs(cohort)
        return random_outputs(cohort, **(self.shape or {}), seed=seed)


def random_outputs(cohort: Cohort, *, n_latent: int, n_dxc: int, n_v: int, seed: int) -> ModelOutputs:
    """A (n_cells, n_latent) N(0, 1) cell view ``c`` and N(0, 1) donor factors D (n_dxc) and V (n_v)."""
    rng = np.random.default_rng([seed, 20_251_202])
    donors = pd.Index(cohort.donor_names.astype(str), name="donor")

    def factors(k: int, prefix: str) -> pd.DataFrame:
        return pd.DataFrame(rng.standard_normal((len(donors), k)), donors, [f"{prefix}{i}" for i in range(k)])

    views = {"c": rng.standard_normal((cohort.n_cells, n_latent))}
    config = {"n_latent": n_latent, "n_dxc": n_dxc, "n_v": n_v, "seed": seed}
    return ModelOutputs(
        views=views, donor_factors={"D": factors(n_dxc, "d"), "V": factors(n_v, "v")}, config=config
    )


def truth_outputs(cohort: Cohort) -> ModelOutputs:
    """The true cell states as view ``c``; the true D×C and persistent factors as D and V."""
    truth = cohort.truth
    factors = {"D": truth.donor_factors}
    if truth.persistent_factors.shape[1]:
        factors["V"] = truth.persistent_factors
    return ModelOutputs(views={"c": np.asarray(truth.cell_state, dtype=float)}, donor_factors=factors)


class ControlKind(SpecKind):
    """``control:random`` and ``control:truth``."""

    name = "control"

    def matches(self, raw: str) -> bool:
        return raw.startswith(PREFIX)

    def parse(self, raw: str) -> ControlSpec:
        control = raw.removeprefix(PREFIX)
        if control not in CONTROLS:
            raise ValueError(f"unknown control {raw!r}; controls: {', '.join(PREFIX + c for c in CONTROLS)}")
        return ControlSpec(raw, control)


register(ControlKind())
