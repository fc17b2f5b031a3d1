"""scverse inputs in the shapes scverse tools write, converted to the Cohort's MuData (``rna`` + ``prot``).

Each conversion logs one INFO line saying what it did; an input it cannot convert is refused with
the fix. The conversions, in the order applied (:func:`cohort_mudata`):

- a plain AnnData becomes the ``rna`` modality;
- an ``rna`` AnnData whose ``var['feature_types']`` holds Gene Expression and Antibody Capture
  (Cell Ranger's layout) is split into ``rna`` and ``prot`` by it, as ``mudata.MuData(adata)`` does,
  so antibodies are never modelled as genes (and a gene and an antibody may share a name);
- ``obsm['protein_expression']`` (scvi-tools' totalVI convention: a DataFrame, or an array named by
  ``uns['protein_names']``) becomes ``prot``;
- ``counts_layer`` puts a layer's counts in ``X`` (all modalities that have the layer, or per modality);
- ``round_counts`` rounds floats within :data:`NEAR_INTEGER` of integers (a CSV or R round trip).

A MuData that needs none of these is returned as it is (no copy).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

from multilivi.data.cohort import MODALITY_ALIASES, NEAR_INTEGER, PROT, RNA, new_mudata

logger = logging.getLogger(__name__)

FEATURE_TYPES = "feature_types"  # var column of Cell Ranger's feature types
PROTEIN_OBSM = "protein_expression"  # scvi-tools' obsm key of protein counts
PROTEIN_NAMES_UNS = "protein_names"  # scvi-tools' uns key of their names (when obsm holds an array)

CountsLayer = str | Mapping[str, str] | None
"""A layer for every modality that has it, or ``{modality: layer}``."""


def cohort_mudata(
    data: ad.AnnData | md.MuData, *, counts_layer: CountsLayer = None, round_counts: bool = False
) -> md.MuData:
    """``data`` as a MuData of raw counts with modalities ``rna`` and (when present) ``prot``.

    Parameters
    ----------
    data
        An AnnData (cells x genes, possibly with antibodies in ``var['feature_types']`` or
        ``obsm['protein_expression']``) or a MuData with an ``rna`` modality (or an alias: ``gex``...).
    counts_layer
        Layer holding the raw counts: a name (used for every modality that has it) or
        ``{modality: layer}`` (each must exist). None: ``X`` holds them.
    round_counts
        Round counts that are floats within :data:`NEAR_INTEGER` of integers (logged); counts further
        away are left for the Cohort to refuse as normalised.

    Returns
    -------
    MuData
        ``data`` itself when no conversion applies, else a new MuData (the global obs of a MuData kept).

    Raises
    ------
    TypeError
        When ``data`` is neither an AnnData nor a MuData.
    ValueError
        For a layout that cannot be converted unambiguously, naming the fix.
    """
    if isinstance(data, md.MuData):
        modalities, global_obs = dict(data.mod), data.obs
    elif isinstance(data, ad.AnnData):
        logger.info("AnnData read as the 'rna' modality (%d cells x %d features)", data.n_obs, data.n_vars)
        modalities, global_obs = {RNA: data}, None
    else:
        raise TypeError(
            f"cells must be an anndata.AnnData or a mudata.MuData, got {type(data).__name__}; build one, "
            "e.g. MuData({'rna': adata_rna, 'prot': adata_prot})"
        )
    converted = _split_by_feature_types(modalities)
    converted = _protein_from_obsm(converted)
    converted = _counts_from_layers(converted, counts_layer)
    if round_counts:
        converted = {m: _rounded(m, a) for m, a in converted.items()}
    same = converted.keys() == modalities.keys() and all(converted[m] is modalities[m] for m in converted)
    if global_obs is not None and same:
        return data  # a MuData that needs no conversion
    mdata = new_mudata(converted)
    if global_obs is not None and len(global_obs.columns):
        mdata.obs = global_obs.reindex(mdata.obs_names)
    return mdata


def parse_counts_layer(text: str) -> CountsLayer:
    """The CLI's ``--counts-layer``: ``counts`` (every modality) or ``rna=counts,prot=counts``."""
    if "=" not in text:
        return text
    pairs = [item.partition("=") for item in text.split(",") if item.strip()]
    bad = [key + sep + value for key, sep, value in pairs if not (sep and key.strip() and value.strip())]
    if bad:
        raise ValueError(
            f"--counts-layer {text!r}: {bad[0]!r} is not modality=layer; write e.g. rna=counts,prot=counts "
            "(or one layer name for every modality)"
        )
    return {key.strip(): value.strip() for key, _, value in pairs}


# ---------------------------------------------------------------------------------- conversions
def _rna_key(modalities: Mapping[str, ad.AnnData]) -> str | None:
    return next((k for k in modalities if MODALITY_ALIASES.get(k.lower()) == RNA), None)


def _has_protein(modalities: Mapping[str, ad.AnnData]) -> bool:
    return any(MODALITY_ALIASES.get(k.lower()) == PROT for k in modalities)


def _split_by_feature_types(modalities: dict[str, ad.AnnData]) -> dict[str, ad.AnnData]:
    """Split the rna AnnData by ``var['feature_types']`` when it holds more than gene expression."""
    key = _rna_key(modalities)
    if key is None or FEATURE_TYPES not in modalities[key].var.columns:
        return modalities
    adata = modalities[key]
    types = adata.var[FEATURE_TYPES].astype(str)
    targets = {t: MODALITY_ALIASES.get(t.lower()) for t in types.unique()}
    if set(targets.values()) == {RNA}:
        return modalities
    unknown = sorted(t for t, m in targets.items() if m is None)
    if unknown:
        kept = sorted(t for t, m in targets.items() if m is not None)
        raise ValueError(
            f"var[{FEATURE_TYPES!r}] of {key!r} holds feature types {unknown} that multilivi does not model "
            f"(it models gene expression and antibody capture); keep the others: "
            f"adata = adata[:, adata.var[{FEATURE_TYPES!r}].isin({kept})].copy()"
        )
    if _has_protein(modalities):
        raise ValueError(
            f"modality {key!r} holds antibody features (var[{FEATURE_TYPES!r}]) beside a protein modality; "
            f"keep its genes only: mdata.mod[{key!r}] = rna[:, rna.var[{FEATURE_TYPES!r}] == "
            f"{next(t for t, m in targets.items() if m == RNA)!r}].copy()"
        )
    split: dict[str, ad.AnnData] = {}
    for modality in (RNA, PROT):
        chosen = [t for t, m in targets.items() if m == modality]
        mask = types.isin(chosen).to_numpy()
        part = adata[:, mask]
        obs = adata.obs.copy() if modality == RNA else pd.DataFrame(index=adata.obs_names.copy())
        layers = {name: layer[:, mask] for name, layer in adata.layers.items()}
        split[modality] = ad.AnnData(X=part.X, obs=obs, var=part.var.copy(), layers=layers)
    logger.info(
        "modality %r split by var[%r]: %s -> rna (%d features), %s -> prot (%d features)",
        key,
        FEATURE_TYPES,
        sorted(t for t, m in targets.items() if m == RNA),
        split[RNA].n_vars,
        sorted(t for t, m in targets.items() if m == PROT),
        split[PROT].n_vars,
    )
    return {**{k: a for k, a in modalities.items() if k != key}, **split}


def _protein_from_obsm(modalities: dict[str, ad.AnnData]) -> dict[str, ad.AnnData]:
    """``obsm['protein_expression']`` of the rna AnnData as the ``prot`` modality."""
    key = _rna_key(modalities)
    if key is None or PROTEIN_OBSM not in modalities[key].obsm:
        return modalities
    adata = modalities[key]
    if _has_protein(modalities):
        raise ValueError(
            f"protein counts are in both a protein modality and {key!r}.obsm[{PROTEIN_OBSM!r}]; drop one "
            f"(del adata.obsm[{PROTEIN_OBSM!r}])"
        )
    values = adata.obsm[PROTEIN_OBSM]
    if isinstance(values, pd.DataFrame):
        names = values.columns.astype(str)
        if not values.index.astype(str).equals(adata.obs_names):
            values = values.reindex(adata.obs_names)
        x = values.to_numpy()
    else:
        x = values if sp.issparse(values) else np.asarray(values)
        names = adata.uns.get(PROTEIN_NAMES_UNS)
        if names is None:
            names = pd.Index([f"protein_{j}" for j in range(x.shape[1])])
            logger.warning(
                "obsm[%r] has no protein names (uns[%r]); calling them protein_0..protein_%d",
                PROTEIN_OBSM,
                PROTEIN_NAMES_UNS,
                x.shape[1] - 1,
            )
        names = pd.Index(np.asarray(names).astype(str))
        if len(names) != x.shape[1]:
            raise ValueError(
                f"uns[{PROTEIN_NAMES_UNS!r}] names {len(names)} proteins but obsm[{PROTEIN_OBSM!r}] has "
                f"{x.shape[1]} columns; give one name per column"
            )
    prot = ad.AnnData(X=x, obs=pd.DataFrame(index=adata.obs_names.copy()), var=pd.DataFrame(index=names))
    obsm = {k: v for k, v in adata.obsm.items() if k != PROTEIN_OBSM}  # once: a written cohort reads back
    rna = ad.AnnData(X=adata.X, obs=adata.obs, var=adata.var, layers=dict(adata.layers), obsm=obsm)
    logger.info(
        "%s.obsm[%r] read as the 'prot' modality (%d proteins; scvi-tools' convention)",
        key,
        PROTEIN_OBSM,
        prot.n_vars,
    )
    return {**modalities, key: rna, PROT: prot}


def _counts_from_layers(
    modalities: dict[str, ad.AnnData], counts_layer: CountsLayer
) -> dict[str, ad.AnnData]:
    """Modalities whose ``X`` is replaced by their ``counts_layer``."""
    if counts_layer is None:
        return modalities
    canonical = {MODALITY_ALIASES.get(k.lower(), k): k for k in modalities}
    if isinstance(counts_layer, str):
        chosen = {k: counts_layer for k, a in modalities.items() if counts_layer in a.layers}
        if not chosen:
            raise ValueError(
                f"counts layer {counts_layer!r} is in no modality; layers: {_layers_of(modalities)}"
            )
        for k in modalities.keys() - chosen.keys():
            logger.info("modality %r has no layer %r: its counts are read from X", k, counts_layer)
    else:
        chosen = {}
        for modality, layer in counts_layer.items():
            key = canonical.get(MODALITY_ALIASES.get(modality.lower(), modality))
            if key is None:
                raise ValueError(
                    f"counts layer for modality {modality!r}, which the cells lack; modalities: "
                    f"{sorted(canonical)}"
                )
            if layer not in modalities[key].layers:
                raise ValueError(f"modality {key!r} has no layer {layer!r}; layers: {_layers_of(modalities)}")
            chosen[key] = layer
    out = dict(modalities)
    for key, layer in chosen.items():
        adata = modalities[key]
        out[key] = ad.AnnData(X=adata.layers[layer], obs=adata.obs, var=adata.var, layers=dict(adata.layers))
        logger.info("modality %r: counts read from layers[%r]", key, layer)
    return out


def _rounded(key: str, adata: ad.AnnData) -> ad.AnnData:
    """``adata`` with near-integer float counts rounded (itself when there is nothing to round)."""
    x = adata.X
    if x is None:
        return adata
    values = x.data if sp.issparse(x) else np.asarray(x)
    if not np.issubdtype(values.dtype, np.floating) or not values.size:
        return adata
    deviation = np.abs(values - np.round(values))
    worst = float(np.nanmax(deviation)) if np.isfinite(deviation).any() else 0.0
    if worst == 0.0 or worst > NEAR_INTEGER:
        return adata  # integers already, or normalised data the Cohort refuses
    rounded = x.copy()
    if sp.issparse(rounded):
        rounded.data = np.round(rounded.data)
        rounded.eliminate_zeros()
    else:
        rounded = np.round(rounded)
    logger.info(
        "modality %r: %d counts rounded to integers (max deviation %.2g)",
        key,
        int((deviation > 0).sum()),
        worst,
    )
    return ad.AnnData(X=rounded, obs=adata.obs, var=adata.var, layers=dict(adata.layers))


def _layers_of(modalities: Mapping[str, ad.AnnData]) -> dict[str, list[str]]:
    return {k: list(a.layers) for k, a in modalities.items()}
