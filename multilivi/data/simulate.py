"""Ground-truth simulator of a CITE-seq donor cohort with genetic donor x cell-state effects.

Generative story (every number below is a :class:`SimulationConfig` field):

Donors and genotypes (:func:`simulate_genotypes`)
    Ancestral allele frequencies with MAF ~ U(maf_min, 0.5); Balding-Nichols subpopulations with
    differentiation ``fst``; each donor is two haplotypes drawn from its population's frequencies;
    a few related pairs (full siblings from two shared unobserved parents, or parent-offspring)
    so that kinship matters; a few missing calls. Variants are independent (no LD).
    Causal variants are drawn among those with cohort MAF >= ``causal_maf_min``; the rest are null.

Cell states (non-negative, on the simplex)
    Each cell type has a dominant state; subtypes shift weight towards a "secondary" state
    (visible in RNA and protein). For the first ``n_protein_only_subtypes`` cell types, the last
    subtype instead moves weight from the dominant state to a *twin* state whose RNA program is
    identical to the dominant one and whose protein program has extra markers, so that subtype is
    separable only through protein. Cell-level weights are logistic-normal around the subtype's
    logits; the twin share of the dominant state is Beta distributed.

RNA counts
    logits = c W_C + sum_k c[s_k] d[donor, k] w_k + v[donor] W_V + batch shift, where each D x C
    program k acts in one state s_k on a sparse gene program w_k, with
    d[., k] = centred causal dosage x effect + non-genetic donor noise (unit variance in total, the
    causal part explaining ``dxc_variance_explained`` of it), and v are persistent donor factors
    (some with a causal variant). Counts ~ NB(library x softmax(logits), per-gene theta), library
    size log-normal with a floor.

Protein counts
    Foreground logits = c W_C^prot + z W_z (a per-cell latent that RNA does not see) + donor
    staining shift (per donor and protein) + batch shift + D x C effects on a few proteins;
    foreground ~ NB(protein library x donor staining efficiency x softmax, per-protein theta);
    background ~ Poisson(per-cell ambient level x ambient profile), as in CITE-seq / totalVI.

The true loadings are stored in ``mdata['rna'].varm`` (``true_W_C``, ``true_W_DxC``, ``true_W_V``)
and ``mdata['prot'].varm`` (``true_W_C``, ``true_W_DxC``); everything else in :class:`Truth`.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from multilivi.data.cohort import PROT, RNA, Cohort, new_mudata
from multilivi.data.genetics import Genotypes
from multilivi.data.truth import Truth

logger = logging.getLogger(__name__)

_BASES = np.array(["A", "C", "G", "T"])
_MAX_REDRAWS = 100  # rounds of redrawing variants below the cohort MAF threshold
MAX_BLOCK_ENTRIES = 2**24  # cells x genes drawn at once (134 MB per float64 block array)
_MIN_EXPECTED_FEATURE_COUNT = (
    50.0  # expected total counts of the rarest feature; P(all zero) is then negligible
)


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """Every dimension and effect size of :func:`simulate`. Logit-scale effects are natural-log units."""

    # --- donors and cells
    n_donors: int = 100  # number of donors
    mean_cells_per_donor: float = 90.0  # mean cells per donor (log-normal around it)
    cells_per_donor_sd: float = 0.25  # sd of log cells-per-donor
    min_cells_per_donor: int = 20  # floor on cells per donor
    n_batches: int = 4  # donors are nested in batches
    composition_concentration: float = (
        30.0  # Dirichlet concentration of per-donor cell-type/subtype proportions
    )

    # --- genotypes
    n_variants: int = 1000  # number of variants
    n_populations: int = 3  # Balding-Nichols subpopulations
    fst: float = 0.05  # population differentiation
    n_related_pairs: int = 4  # sibling / parent-offspring pairs among the donors
    missing_rate: float = 0.002  # fraction of missing genotype calls (NaN)
    maf_min: float = 0.05  # minimum ancestral and cohort minor-allele frequency
    causal_maf_min: float = 0.2  # causal variants are drawn among variants with cohort MAF >= this

    # --- cell states
    n_cell_types: int = 4  # cell types, each with a dominant state
    n_subtypes: int = 3  # subtypes per cell type
    n_protein_only_subtypes: int = 2  # cell types whose last subtype differs from the first only in protein
    n_states: int = 10  # cell-state dimensions (dominant + twin + secondary states)
    state_dominance: float = 3.0  # logit of a cell type's dominant state over the others
    subtype_shift: float = 2.5  # logit added to a subtype's secondary state
    cell_state_noise: float = 0.6  # sd of cell-level logistic-normal noise on state logits
    twin_share_protein_only: float = (
        0.75  # mean share of the dominant state moved to its twin in protein-only subtypes
    )
    twin_share_other: float = 0.1  # the same share in all other cells
    twin_concentration: float = 10.0  # Beta concentration of the twin share

    # --- RNA
    n_genes: int = 800  # number of genes
    gene_baseline_sd: float = 1.0  # sd of per-gene baseline logits
    gene_baseline_floor: float = -2.5  # baseline logits are clipped below at this (no silent genes)
    rna_markers_per_state: float = 0.04  # fraction of genes that mark each state
    rna_marker_effect: float = 2.0  # mean logit of a state marker gene
    rna_state_noise: float = 0.3  # sd of sparse non-marker state loadings
    rna_state_noise_density: float = 0.2  # fraction of non-marker state loadings that are non-zero
    rna_library_median: float = 2000.0  # median RNA counts per cell
    rna_library_sd: float = 0.4  # sd of log RNA library size
    rna_library_min: float = 300.0  # floor of the RNA library size
    rna_theta_median: float = 8.0  # median per-gene NB inverse dispersion
    rna_theta_sd: float = 0.5  # sd of log per-gene inverse dispersion
    batch_effect_sd: float = 0.1  # sd of per-batch, per-feature logit shifts (RNA and protein)

    # --- donor x cell-state (D x C) programs
    n_dxc: int = 10  # number of D x C programs
    causal_per_factor: int = 1  # causal variants per genetic factor (D x C or persistent)
    dxc_variance_explained: float = (
        0.4  # share of a D x C factor's donor variance explained by its causal variants
    )
    dxc_genes_per_program: int = 25  # genes in each D x C program
    dxc_effect_scale: float = 0.5  # logit effect on a program gene per unit donor factor in a pure cell state
    dxc_proteins_per_program: int = 1  # proteins touched by each D x C program (0: RNA only)

    # --- persistent (V) donor factors
    n_persistent: int = 3  # persistent donor factors
    n_persistent_causal: int = 2  # of which have causal variants
    persistent_variance_explained: float = 0.4  # share of a causal persistent factor's variance explained
    persistent_genes_per_factor: int = 30  # genes in each persistent program
    persistent_effect_scale: float = 0.3  # logit effect per unit persistent factor

    # --- protein
    n_proteins: int = 36  # number of proteins
    protein_baseline_sd: float = 0.5  # sd of per-protein baseline logits
    protein_markers_per_state: int = 2  # proteins that mark each visible state (and each twin)
    protein_marker_effect: float = 2.0  # mean logit of a state marker protein
    protein_only_marker_effect: float = (
        3.0  # mean logit of a twin state's extra markers (protein-only subtypes)
    )
    n_protein_latent: int = 2  # dimensions of the per-cell protein-only latent
    protein_latent_scale: float = 0.5  # sd of protein-only latent loadings
    protein_latent_density: float = 0.3  # fraction of non-zero protein-only latent loadings
    protein_library_median: float = 1500.0  # median foreground protein counts per cell
    protein_library_sd: float = 0.4  # sd of log protein library size
    protein_library_min: float = 200.0  # floor of the foreground protein library
    protein_theta_median: float = 10.0  # median per-protein NB inverse dispersion
    staining_efficiency_sd: float = 0.3  # sd of log per-donor staining efficiency (foreground scale)
    staining_protein_sd: float = 0.15  # sd of per-donor, per-protein staining logit shift
    background_mean: float = 150.0  # mean ambient background counts per cell
    background_sd: float = 0.3  # sd of log per-cell background level

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def ci(cls) -> SimulationConfig:
        """A tiny cohort (about 1,500 cells, 30 donors, 150 genes, 15 proteins, 300 variants) for tests."""
        return cls(
            n_donors=30,
            mean_cells_per_donor=50.0,
            min_cells_per_donor=20,
            n_batches=2,
            n_variants=300,
            n_related_pairs=3,
            n_states=8,
            n_genes=150,
            rna_markers_per_state=0.06,
            n_dxc=6,
            dxc_genes_per_program=15,
            n_persistent=2,
            n_persistent_causal=1,
            persistent_genes_per_factor=15,
            n_proteins=15,
            protein_markers_per_state=1,
        )

    @property
    def n_twin_states(self) -> int:
        return self.n_protein_only_subtypes

    @property
    def n_secondary_states(self) -> int:
        return self.n_states - self.n_cell_types - self.n_twin_states

    @property
    def n_causal(self) -> int:
        return (self.n_dxc + self.n_persistent_causal) * self.causal_per_factor


def _validate(cfg: SimulationConfig) -> None:
    positive = (
        "n_donors",
        "n_batches",
        "n_variants",
        "n_populations",
        "n_cell_types",
        "n_subtypes",
        "n_states",
        "n_genes",
        "n_proteins",
        "causal_per_factor",
        "min_cells_per_donor",
    )
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ValueError(f"SimulationConfig.{name} must be >= 1, got {getattr(cfg, name)}")
    for name in (
        "n_dxc",
        "n_persistent",
        "n_persistent_causal",
        "n_related_pairs",
        "n_protein_only_subtypes",
        "n_protein_latent",
        "dxc_proteins_per_program",
        "protein_markers_per_state",
    ):
        if getattr(cfg, name) < 0:
            raise ValueError(f"SimulationConfig.{name} must be >= 0, got {getattr(cfg, name)}")
    for name in ("dxc_variance_explained", "persistent_variance_explained", "missing_rate"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise ValueError(f"SimulationConfig.{name} must lie in [0, 1), got {getattr(cfg, name)}")
    if not 0.0 < cfg.fst < 1.0:
        raise ValueError(f"SimulationConfig.fst must lie in (0, 1), got {cfg.fst}")
    if not 0.0 < cfg.maf_min <= cfg.causal_maf_min < 0.5:
        raise ValueError(
            f"need 0 < maf_min <= causal_maf_min < 0.5, got maf_min={cfg.maf_min}, "
            f"causal_maf_min={cfg.causal_maf_min}"
        )
    if cfg.n_secondary_states < 1:
        raise ValueError(
            f"n_states={cfg.n_states} leaves no secondary state: it must be at least n_cell_types "
            f"+ n_protein_only_subtypes + 1 = {cfg.n_cell_types + cfg.n_protein_only_subtypes + 1}; "
            "raise n_states or lower n_cell_types / n_protein_only_subtypes"
        )
    if cfg.n_protein_only_subtypes > cfg.n_cell_types:
        raise ValueError(
            f"n_protein_only_subtypes={cfg.n_protein_only_subtypes} exceeds n_cell_types={cfg.n_cell_types}: "
            "at most one protein-only subtype per cell type"
        )
    if cfg.n_protein_only_subtypes and cfg.n_subtypes < 2:
        raise ValueError(
            "protein-only subtypes need n_subtypes >= 2 (a base subtype to differ from); "
            "raise n_subtypes or set n_protein_only_subtypes=0"
        )
    if cfg.n_persistent_causal > cfg.n_persistent:
        raise ValueError(
            f"n_persistent_causal={cfg.n_persistent_causal} exceeds n_persistent={cfg.n_persistent}"
        )
    if cfg.n_causal > cfg.n_variants // 2:
        raise ValueError(
            f"{cfg.n_causal} causal variants need at least {2 * cfg.n_causal} variants (half of them null); "
            f"raise n_variants (now {cfg.n_variants}) or lower n_dxc / n_persistent_causal / "
            "causal_per_factor"
        )
    if 2 * cfg.n_related_pairs > cfg.n_donors:
        raise ValueError(
            f"{cfg.n_related_pairs} related pairs need at least {2 * cfg.n_related_pairs} donors"
        )
    if cfg.dxc_genes_per_program > cfg.n_genes or cfg.persistent_genes_per_factor > cfg.n_genes:
        raise ValueError("dxc_genes_per_program and persistent_genes_per_factor must not exceed n_genes")
    if cfg.dxc_proteins_per_program > cfg.n_proteins:
        raise ValueError("dxc_proteins_per_program must not exceed n_proteins")
    if cfg.rna_library_min < 50 or cfg.protein_library_min < 20 or cfg.background_mean <= 0:
        raise ValueError(
            "library floors too low to guarantee non-empty cells: need rna_library_min >= 50, "
            "protein_library_min >= 20 and background_mean > 0"
        )
    if cfg.mean_cells_per_donor < cfg.min_cells_per_donor:
        raise ValueError(
            f"mean_cells_per_donor={cfg.mean_cells_per_donor} is below "
            f"min_cells_per_donor={cfg.min_cells_per_donor}"
        )
    for name in ("twin_share_protein_only", "twin_share_other"):
        if not 0.0 < getattr(cfg, name) < 1.0:
            raise ValueError(f"SimulationConfig.{name} must lie in (0, 1), got {getattr(cfg, name)}")


# ------------------------------------------------------------------------------------------ genotypes
def simulate_genotypes(
    donors: Sequence[str],
    *,
    n_variants: int,
    seed: int | np.random.Generator,
    n_populations: int = 3,
    fst: float = 0.05,
    n_related_pairs: int = 4,
    missing_rate: float = 0.002,
    maf_min: float = 0.05,
) -> Genotypes:
    """Donor genotypes with population structure, related pairs and missing calls.

    Ancestral minor-allele frequencies are U(maf_min, 0.5) with a random allele orientation;
    population frequencies follow Balding-Nichols with ``fst``; variants whose MAF in these donors
    falls below ``maf_min`` are redrawn (as a cohort MAF filter would remove them, so every variant
    is polymorphic); donors are assigned to populations
    with decreasing proportions (1/1, 1/2, 1/3, ... normalised). Each donor has two haplotypes drawn
    from its population. Then ``n_related_pairs`` disjoint random pairs of donors of the same
    population are made related, alternately as full siblings (each inherits one haplotype per
    locus from each of two shared, unobserved parents) and as parent-offspring (the child inherits one
    haplotype per locus of the parent). Loci are independent (no LD). A fraction ``missing_rate``
    of calls is set to NaN. Variants are spread over 22 autosomes in position order.

    Parameters
    ----------
    donors
        Donor names, length n_donors.
    n_variants
        Number of variants.
    seed
        Seed or generator.

    Returns
    -------
    Genotypes with dosage of shape (n_donors, n_variants) counting allele ``a1``.
    """
    rng = np.random.default_rng(seed)
    donors = pd.Index(np.asarray(donors).astype(str))
    n = len(donors)
    if n_variants < 1 or n < 2:
        raise ValueError(f"need at least 2 donors and 1 variant, got {n} donors and {n_variants} variants")
    if not 0.0 < maf_min < 0.5:
        raise ValueError(f"maf_min must lie in (0, 0.5), got {maf_min}")
    if 2 * n_related_pairs > n:
        raise ValueError(
            f"{n_related_pairs} related pairs need at least {2 * n_related_pairs} donors, got {n}"
        )

    proportions = 1.0 / np.arange(1, n_populations + 1)
    population = rng.choice(n_populations, size=n, p=proportions / proportions.sum())  # (n_donors,)
    pairs = _related_pairs(rng, population, n_related_pairs)
    dosage = _draw_loci(rng, n_variants, population, pairs, fst, maf_min)
    rare = _rare_loci(dosage, maf_min)
    for _ in range(_MAX_REDRAWS):  # a cohort MAF filter, applied by redrawing the filtered loci
        if rare.size == 0:
            break
        dosage[:, rare] = _draw_loci(rng, rare.size, population, pairs, fst, maf_min)
        rare = _rare_loci(dosage, maf_min)
    if rare.size:
        raise ValueError(
            f"{rare.size} variants stay below cohort MAF {maf_min} after {_MAX_REDRAWS} redraws; "
            "add donors or lower maf_min"
        )
    dosage[rng.random(dosage.shape) < missing_rate] = np.nan
    logger.debug("related pairs: %s", [(donors[i], donors[j]) for i, j in pairs])
    return Genotypes(dosage, donors, _variant_table(rng, n_variants))


def _rare_loci(dosage: np.ndarray, maf_min: float) -> np.ndarray:
    freq = dosage.mean(axis=0) / 2.0
    return np.flatnonzero(np.minimum(freq, 1.0 - freq) < maf_min)


def _draw_loci(
    rng: np.random.Generator,
    n_loci: int,
    population: np.ndarray,
    pairs: list[tuple[int, int]],
    fst: float,
    maf_min: float,
) -> np.ndarray:
    """Dosages of shape (n_donors, n_loci) of independent loci (Balding-Nichols, then related pairs)."""
    n = population.size
    maf = rng.uniform(maf_min, 0.5, n_loci)
    ancestral = np.where(rng.random(n_loci) < 0.5, maf, 1.0 - maf)  # (n_loci,)
    a = ancestral * (1.0 - fst) / fst
    b = (1.0 - ancestral) * (1.0 - fst) / fst
    pop_freq = np.clip(rng.beta(a, b, size=(population.max() + 1, n_loci)), 1e-3, 1.0 - 1e-3)
    haplotypes = (rng.random((n, 2, n_loci)) < pop_freq[population][:, None, :]).astype(np.int8)
    for i, (first, second) in enumerate(pairs):
        freq = pop_freq[population[first]]
        if i % 2 == 0:  # full siblings from two unobserved parents
            parents = (rng.random((2, 2, n_loci)) < freq).astype(np.int8)
            for child in (first, second):
                pick = rng.integers(0, 2, size=(2, n_loci))
                haplotypes[child] = np.take_along_axis(parents, pick[:, None, :], axis=1)[:, 0, :]
        else:  # parent-offspring: ``second`` inherits one haplotype of ``first``
            pick = rng.integers(0, 2, size=n_loci)
            haplotypes[second, 0] = haplotypes[first, pick, np.arange(n_loci)]
            haplotypes[second, 1] = (rng.random(n_loci) < freq).astype(np.int8)
    return haplotypes.sum(axis=1).astype(np.float64)


def _related_pairs(rng: np.random.Generator, population: np.ndarray, n_pairs: int) -> list[tuple[int, int]]:
    """Disjoint random pairs of donors that share a population."""
    pairs: list[tuple[int, int]] = []
    used = np.zeros(population.size, dtype=bool)
    for donor in rng.permutation(population.size):
        if len(pairs) == n_pairs:
            break
        if used[donor]:
            continue
        mates = np.flatnonzero(~used & (population == population[donor]))
        mates = mates[mates != donor]
        if mates.size == 0:
            continue
        mate = int(rng.choice(mates))
        used[[donor, mate]] = True
        pairs.append((int(donor), mate))
    if len(pairs) < n_pairs:
        raise ValueError(f"could not form {n_pairs} related pairs within populations; lower n_related_pairs")
    return pairs


def _variant_table(rng: np.random.Generator, n_variants: int) -> pd.DataFrame:
    chrom = np.sort(rng.integers(1, 23, n_variants))
    pos = np.empty(n_variants, dtype=np.int64)
    for c in np.unique(chrom):
        idx = np.flatnonzero(chrom == c)
        pos[idx] = np.sort(rng.choice(np.arange(10_000, 50_000_000, 1000), idx.size, replace=False))
    alleles = np.array([rng.choice(_BASES, 2, replace=False) for _ in range(n_variants)])
    width = max(4, len(str(n_variants - 1)))
    return pd.DataFrame(
        {
            "id": [f"v{j:0{width}d}" for j in range(n_variants)],
            "chrom": chrom.astype(str),
            "pos": pos,
            "a1": alleles[:, 0],
            "a2": alleles[:, 1],
        }
    )


# ------------------------------------------------------------------------------------------ simulate
def simulate(
    config: SimulationConfig | None = None,
    *,
    seed: int = 0,
    max_block_entries: int = MAX_BLOCK_ENTRIES,
    **overrides,
) -> Cohort:
    """Simulate a CITE-seq donor cohort with known genetic donor x cell-state effects.

    Parameters
    ----------
    config
        Dimensions and effect sizes; the default config when None (``SimulationConfig.ci()`` is tiny).
    seed
        Seed of every random draw: the same seed (and ``max_block_entries``) gives an identical cohort.
    max_block_entries
        Cells x genes drawn at once: counts are drawn for blocks of consecutive cells straight into
        sparse matrices, so memory is bounded by the block and the sparse counts. A cohort that fits
        one block (the default and CI cohorts do) gets the draws of drawing all cells at once.
    **overrides
        ``SimulationConfig`` fields replacing those of ``config`` (e.g. ``n_donors=50``).

    Returns
    -------
    Cohort named ``"sim"`` with modalities ``rna`` and ``prot``, genotypes and :class:`Truth`.
    """
    cfg = _configure(config, overrides)
    start = time.perf_counter()
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    rng_geno, rng_cells, rng_rna_params, rng_prot_params, rng_rna_counts, rng_prot_counts = streams

    donors = pd.Index(_names("d", cfg.n_donors, 3), name="donor")
    genotypes = simulate_genotypes(
        donors,
        n_variants=cfg.n_variants,
        seed=rng_geno,
        n_populations=cfg.n_populations,
        fst=cfg.fst,
        n_related_pairs=cfg.n_related_pairs,
        missing_rate=0.0,
        maf_min=cfg.maf_min,
    )
    true_dosage = genotypes.dosage  # complete calls generate phenotypes; missingness is applied afterwards
    factors = _donor_factors(cfg, rng_geno, true_dosage, genotypes.variant_ids)
    observed = true_dosage.copy()
    observed[rng_geno.random(observed.shape) < cfg.missing_rate] = np.nan
    genotypes = Genotypes(observed, donors, genotypes.variants)

    cells = _cells(cfg, rng_cells)
    states = _states(cfg)
    rna = _rna_parameters(cfg, rng_rna_params, states)
    prot = _protein_parameters(cfg, rng_prot_params, states)
    counts = _draw_counts(cfg, cells, factors, rna, prot, rng_rna_counts, rng_prot_counts, max_block_entries)

    cohort = _assemble(cfg, donors, cells, states, factors, genotypes, rna, prot, counts.rna, counts.prot)
    logger.info(
        "simulated %d cells x %d genes x %d proteins, %d donors, %d variants in %.2f s (%d blocks of cells); "
        "share of RNA logit variance: %s",
        cohort.n_cells,
        cfg.n_genes,
        cfg.n_proteins,
        cfg.n_donors,
        cfg.n_variants,
        time.perf_counter() - start,
        counts.n_blocks,
        ", ".join(f"{k} {v:.3f}" for k, v in counts.variance_shares.items()),
    )
    return cohort


def _configure(config: SimulationConfig | None, overrides: dict) -> SimulationConfig:
    config = SimulationConfig() if config is None else config
    if not isinstance(config, SimulationConfig):
        raise TypeError(f"config must be a SimulationConfig, got {type(config).__name__}")
    known = [f.name for f in fields(SimulationConfig)]
    for key in overrides:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else f"; known fields: {known}"
            raise ValueError(f"unknown simulation parameter {key!r}{hint}")
    return replace(config, **overrides) if overrides else config


def _names(prefix: str, n: int, min_width: int) -> list[str]:
    width = max(min_width, len(str(n - 1)))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


# ------------------------------------------------------------------------------------ donor factors
@dataclass(frozen=True)
class _Factors:
    dxc: np.ndarray  # (n_donors, n_dxc) true D
    persistent: np.ndarray  # (n_donors, n_persistent) true V
    program_states: np.ndarray  # (n_dxc,) state of each D x C program
    causal: pd.DataFrame  # variant, factor, effect
    null_variants: pd.Index


def _donor_factors(
    cfg: SimulationConfig, rng: np.random.Generator, dosage: np.ndarray, variant_ids: pd.Index
) -> _Factors:
    """Draw causal variants and donor factors: centred causal dosage x effect + noise (unit variance)."""
    freq = dosage.mean(axis=0) / 2.0
    maf = np.minimum(freq, 1.0 - freq)
    candidates = np.flatnonzero(maf >= cfg.causal_maf_min)
    if candidates.size < cfg.n_causal:
        raise ValueError(
            f"only {candidates.size} variants have cohort MAF >= causal_maf_min={cfg.causal_maf_min}, "
            f"{cfg.n_causal} causal variants are needed; raise n_variants or lower causal_maf_min"
        )
    causal_idx = rng.choice(candidates, cfg.n_causal, replace=False)
    dxc_names = [f"dxc_{k}" for k in range(cfg.n_dxc)]
    v_names = [f"v_{j}" for j in range(cfg.n_persistent)]
    genetic_targets = [(n, cfg.dxc_variance_explained) for n in dxc_names]
    genetic_targets += [(n, cfg.persistent_variance_explained) for n in v_names[: cfg.n_persistent_causal]]

    values = {name: np.zeros(cfg.n_donors) for name in dxc_names + v_names}
    rows = []
    for t, (name, share) in enumerate(genetic_targets):
        for j in causal_idx[t * cfg.causal_per_factor : (t + 1) * cfg.causal_per_factor]:
            p = freq[j]
            effect = rng.choice([-1.0, 1.0]) * np.sqrt(share / cfg.causal_per_factor / (2.0 * p * (1.0 - p)))
            values[name] += effect * (dosage[:, j] - 2.0 * p)
            rows.append((variant_ids[j], name, effect))
    for t, name in enumerate(dxc_names + v_names):
        share = genetic_targets[t][1] if t < len(genetic_targets) else 0.0
        values[name] += rng.normal(0.0, np.sqrt(1.0 - share), cfg.n_donors)
    causal = pd.DataFrame(rows, columns=["variant", "factor", "effect"])
    null = variant_ids[np.setdiff1d(np.arange(variant_ids.size), causal_idx)]
    return _Factors(
        dxc=np.column_stack([values[n] for n in dxc_names]) if dxc_names else np.zeros((cfg.n_donors, 0)),
        persistent=np.column_stack([values[n] for n in v_names]) if v_names else np.zeros((cfg.n_donors, 0)),
        program_states=_program_states(cfg),
        causal=causal,
        null_variants=pd.Index(null, name="variant"),
    )


# -------------------------------------------------------------------------------------- cell states
@dataclass(frozen=True)
class _States:
    dominant: np.ndarray  # (n_cell_types,) dominant state of each cell type
    twin: np.ndarray  # (n_protein_only_subtypes,) twin state of cell type t (t < n_protein_only_subtypes)
    secondary: np.ndarray  # (n_secondary,) secondary states
    visible: np.ndarray  # states with their own RNA program (all but the twins)


def _states(cfg: SimulationConfig) -> _States:
    dominant = np.arange(cfg.n_cell_types)
    twin = cfg.n_cell_types + np.arange(cfg.n_twin_states)
    secondary = cfg.n_cell_types + cfg.n_twin_states + np.arange(cfg.n_secondary_states)
    return _States(dominant, twin, secondary, np.concatenate([dominant, secondary]))


def _program_states(cfg: SimulationConfig) -> np.ndarray:
    """Cycle D x C programs over states: untwinned dominant states first, then secondary, then twinned."""
    st = _states(cfg)
    order = np.concatenate([st.dominant[cfg.n_twin_states :], st.secondary, st.dominant[: cfg.n_twin_states]])
    return order[np.arange(cfg.n_dxc) % order.size].astype(np.int64)


def _subtype_secondary(cfg: SimulationConfig, cell_type: int, subtype: int) -> int | None:
    """Secondary state a subtype shifts towards; None for the base subtype and protein-only subtypes."""
    if subtype == 0 or _is_protein_only(cfg, cell_type, subtype):
        return None
    st = _states(cfg)
    return int(st.secondary[(cell_type + subtype - 1) % st.secondary.size])


def _is_protein_only(cfg: SimulationConfig, cell_type: int, subtype: int) -> bool:
    return cell_type < cfg.n_protein_only_subtypes and subtype == cfg.n_subtypes - 1


@dataclass(frozen=True)
class _Cells:
    donor: np.ndarray  # (n_cells,) donor position
    batch: np.ndarray  # (n_cells,) batch position
    cell_type: np.ndarray  # (n_cells,)
    subtype: np.ndarray  # (n_cells,) subtype within its cell type
    state: np.ndarray  # (n_cells, n_states) on the simplex
    protein_latent: np.ndarray  # (n_cells, n_protein_latent)

    def rows(self, rows: slice) -> _Cells:
        """The cells ``rows`` (a slice of consecutive cells)."""
        return _Cells(*(getattr(self, f.name)[rows] for f in fields(self)))


def _cells(cfg: SimulationConfig, rng: np.random.Generator) -> _Cells:
    """Cells per donor, their (sub)types from per-donor Dirichlet proportions, and their cell states."""
    mu = np.log(cfg.mean_cells_per_donor) - cfg.cells_per_donor_sd**2 / 2
    n_per_donor = np.maximum(
        cfg.min_cells_per_donor, np.round(rng.lognormal(mu, cfg.cells_per_donor_sd, cfg.n_donors))
    )
    donor = np.repeat(np.arange(cfg.n_donors), n_per_donor.astype(np.int64))
    batch_of_donor = rng.permutation(np.arange(cfg.n_donors) % cfg.n_batches)

    type_weights = 1.0 / np.sqrt(np.arange(1, cfg.n_cell_types + 1))
    type_weights /= type_weights.sum()
    subtype_weights = np.linspace(2.0, 1.0, cfg.n_subtypes)
    subtype_weights /= subtype_weights.sum()
    cell_type = np.empty(donor.size, dtype=np.int64)
    subtype = np.empty(donor.size, dtype=np.int64)
    for d in range(cfg.n_donors):
        idx = np.flatnonzero(donor == d)
        p_type = rng.dirichlet(cfg.composition_concentration * type_weights)
        p_sub = rng.dirichlet(cfg.composition_concentration * subtype_weights, size=cfg.n_cell_types)
        cell_type[idx] = rng.choice(cfg.n_cell_types, idx.size, p=p_type)
        for t in range(cfg.n_cell_types):
            in_t = idx[cell_type[idx] == t]
            subtype[in_t] = rng.choice(cfg.n_subtypes, in_t.size, p=p_sub[t])

    st = _states(cfg)
    logits = np.zeros((cfg.n_cell_types, cfg.n_subtypes, cfg.n_states))
    for t in range(cfg.n_cell_types):
        for s in range(cfg.n_subtypes):
            logits[t, s, st.dominant[t]] = cfg.state_dominance
            secondary = _subtype_secondary(cfg, t, s)
            if secondary is not None:
                logits[t, s, secondary] = cfg.subtype_shift
    cell_logits = logits[cell_type, subtype][:, st.visible]
    cell_logits = cell_logits + cfg.cell_state_noise * rng.standard_normal(cell_logits.shape)
    visible = np.exp(cell_logits - cell_logits.max(axis=1, keepdims=True))
    state = np.zeros((donor.size, cfg.n_states))
    state[:, st.visible] = visible / visible.sum(axis=1, keepdims=True)
    for t, twin in enumerate(st.twin):  # split the dominant state of cell type t with its twin
        protein_only = (cell_type == t) & (subtype == cfg.n_subtypes - 1)
        mean = np.where(protein_only, cfg.twin_share_protein_only, cfg.twin_share_other)
        share = rng.beta(mean * cfg.twin_concentration, (1.0 - mean) * cfg.twin_concentration)
        state[:, twin] = share * state[:, st.dominant[t]]
        state[:, st.dominant[t]] -= state[:, twin]
    latent = rng.standard_normal((donor.size, cfg.n_protein_latent))
    return _Cells(donor, batch_of_donor[donor], cell_type, subtype, state, latent)


# ---------------------------------------------------------------------------------------- RNA
@dataclass(frozen=True)
class _RnaParameters:
    w_state: np.ndarray  # (n_states, n_genes); twin rows equal their dominant state's row
    w_dxc: np.ndarray  # (n_dxc, n_genes)
    w_persistent: np.ndarray  # (n_persistent, n_genes)
    batch_shift: np.ndarray  # (n_batches, n_genes)
    theta: np.ndarray  # (n_genes,)


def _rna_parameters(cfg: SimulationConfig, rng: np.random.Generator, st: _States) -> _RnaParameters:
    g = cfg.n_genes
    baseline = np.maximum(rng.normal(0.0, cfg.gene_baseline_sd, g), cfg.gene_baseline_floor)
    w_state = np.tile(baseline, (cfg.n_states, 1))
    n_markers = max(2, round(cfg.rna_markers_per_state * g))
    for s in st.visible:
        noise = rng.normal(0.0, cfg.rna_state_noise, g) * (rng.random(g) < cfg.rna_state_noise_density)
        markers = rng.choice(g, n_markers, replace=False)
        noise[markers] = rng.normal(cfg.rna_marker_effect, 0.25 * cfg.rna_marker_effect, n_markers)
        w_state[s] += noise
    for t, twin in enumerate(st.twin):
        w_state[twin] = w_state[st.dominant[t]]

    program_states = _program_states(cfg)
    w_dxc = np.zeros((cfg.n_dxc, g))
    for k, s in enumerate(program_states):
        # genes reasonably expressed in the program's state, so that the effect is observable
        expressed = np.flatnonzero(w_state[s] >= np.median(w_state[s]))
        genes = rng.choice(expressed, min(cfg.dxc_genes_per_program, expressed.size), replace=False)
        w_dxc[k, genes] = _signed_magnitudes(rng, genes.size, cfg.dxc_effect_scale)
    w_persistent = np.zeros((cfg.n_persistent, g))
    for j in range(cfg.n_persistent):
        genes = rng.choice(g, cfg.persistent_genes_per_factor, replace=False)
        w_persistent[j, genes] = _signed_magnitudes(rng, genes.size, cfg.persistent_effect_scale)
    batch_shift = rng.normal(0.0, cfg.batch_effect_sd, (cfg.n_batches, g))
    theta = np.exp(rng.normal(np.log(cfg.rna_theta_median), cfg.rna_theta_sd, g))
    return _RnaParameters(w_state, w_dxc, w_persistent, batch_shift, theta)


def _signed_magnitudes(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """Loadings with random signs and magnitudes scale x LogNormal(0, 0.3)."""
    return rng.choice([-1.0, 1.0], n) * scale * rng.lognormal(0.0, 0.3, n)


def _rna_counts(
    cfg: SimulationConfig, rng: np.random.Generator, logits: np.ndarray, theta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """NB counts with mean library x softmax(logits); returns (counts, mean), both (n_cells, n_genes)."""
    mu = np.log(cfg.rna_library_median)
    library = np.maximum(rng.lognormal(mu, cfg.rna_library_sd, logits.shape[0]), cfg.rna_library_min)
    mean = library[:, None] * _softmax(logits)
    return _negative_binomial(rng, mean, theta), mean


# ----------------------------------------------------------------------------------- blocked draws
@dataclass(frozen=True)
class _Counts:
    rna: sp.csr_matrix  # (n_cells, n_genes) float32
    prot: sp.csr_matrix  # (n_cells, n_proteins) float32
    variance_shares: dict[str, float]  # share of the RNA logits' variance over cells per term
    n_blocks: int


def _draw_counts(
    cfg: SimulationConfig,
    cells: _Cells,
    factors: _Factors,
    rna: _RnaParameters,
    prot: _ProteinParameters,
    rng_rna: np.random.Generator,
    rng_prot: np.random.Generator,
    max_block_entries: int,
) -> _Counts:
    """RNA and protein counts of blocks of consecutive cells, each modality from its own stream in order.

    A block holds at most ``max_block_entries // n_genes`` cells; its dense logits, means and draws
    are dropped once its counts are sparse.
    """
    if max_block_entries < 1:
        raise ValueError(f"max_block_entries must be positive, got {max_block_entries}")
    n_cells = cells.donor.size
    block = max(1, max_block_entries // cfg.n_genes)
    n_blocks = -(-n_cells // block)
    rna_rows, prot_rows = _RowBlocks(n_blocks), _RowBlocks(n_blocks)
    expected_rna, expected_prot = np.zeros(cfg.n_genes), np.zeros(cfg.n_proteins)
    moments = _ColumnMoments()
    for start in range(0, n_cells, block):
        part = cells.rows(slice(start, min(start + block, n_cells)))
        interaction = part.state[:, factors.program_states] * factors.dxc[part.donor]  # (cells, n_dxc)
        logits = moments.summed(
            {
                "cell state": part.state @ rna.w_state,
                "D x C": interaction @ rna.w_dxc,
                "persistent": factors.persistent[part.donor] @ rna.w_persistent,
                "batch": rna.batch_shift[part.batch],
            }
        )
        rna_counts, rna_mean = _rna_counts(cfg, rng_rna, logits, rna.theta)
        prot_counts, prot_mean = _protein_counts(cfg, rng_prot, part, interaction, prot)
        expected_rna += rna_mean.sum(axis=0)
        expected_prot += prot_mean.sum(axis=0)
        rna_rows.append(sp.csr_matrix(rna_counts.astype(np.float32)))
        prot_rows.append(sp.csr_matrix(prot_counts.astype(np.float32)))
    _check_expected_counts(expected_rna, expected_prot)
    return _Counts(rna_rows.matrix(), prot_rows.matrix(), moments.variance_shares(), n_blocks)


class _RowBlocks:
    """CSR blocks of rows joined as they come, into buffers that grow in place.

    Each block is copied into the buffers and dropped, so memory is the counts plus one block
    (the buffers are sized from the first block, grown by ``ndarray.resize``, i.e. realloc, which
    remaps large allocations without a copy). A single block is kept as it is.
    """

    def __init__(self, n_blocks: int) -> None:
        self.n_blocks = n_blocks
        self.first: sp.csr_matrix | None = None
        self.data: np.ndarray | None = None  # (capacity,) values
        self.indices: np.ndarray | None = None  # (capacity,) int32 columns
        self.row_nnz: list[np.ndarray] = []
        self.nnz = 0
        self.n_columns = 0

    def append(self, block: sp.csr_matrix) -> None:
        """Add the rows of ``block`` after those added so far."""
        if self.first is None and self.data is None:
            self.first = block
            return
        if self.first is not None:
            first, self.first = self.first, None
            self._copy(first)
        self._copy(block)

    def _copy(self, block: sp.csr_matrix) -> None:
        need = self.nnz + block.nnz
        if self.data is None:
            capacity = max(need, int(1.05 * block.nnz * self.n_blocks))
            self.data = np.empty(capacity, dtype=block.data.dtype)
            self.indices = np.empty(capacity, dtype=np.int32)  # column indices: < n_features
        elif need > self.data.size:
            capacity = max(need, int(1.25 * self.data.size))
            self.data.resize(capacity, refcheck=False)
            self.indices.resize(capacity, refcheck=False)
        self.data[self.nnz : need] = block.data
        self.indices[self.nnz : need] = block.indices
        self.row_nnz.append(np.diff(block.indptr))
        self.nnz, self.n_columns = need, block.shape[1]

    def matrix(self) -> sp.csr_matrix:
        """(rows, columns) CSR matrix of every block's rows, in order."""
        if self.first is not None:
            return self.first
        self.data.resize(self.nnz, refcheck=False)
        self.indices.resize(self.nnz, refcheck=False)
        row_nnz = np.concatenate(self.row_nnz)
        wide = self.nnz > np.iinfo(np.int32).max
        indptr = np.zeros(row_nnz.size + 1, dtype=np.int64 if wide else np.int32)
        np.cumsum(row_nnz, out=indptr[1:])
        indices = self.indices.astype(np.int64) if wide else self.indices
        return sp.csr_matrix((self.data, indices, indptr), shape=(row_nnz.size, self.n_columns))


class _ColumnMoments:
    """Running per-column sums and sums of squares of named terms and of their total, over blocks."""

    def __init__(self) -> None:
        self.n = 0
        self.sums: dict[str, np.ndarray] = {}
        self.squares: dict[str, np.ndarray] = {}

    def summed(self, terms: dict[str, np.ndarray]) -> np.ndarray:
        """Add (cells, columns) ``terms`` and their sum to the moments; returns the sum."""
        total = sum(terms.values())
        for name, values in {**terms, "total": total}.items():
            self.sums[name] = self.sums.get(name, 0.0) + values.sum(axis=0)
            self.squares[name] = self.squares.get(name, 0.0) + np.square(values).sum(axis=0)
        self.n += total.shape[0]
        return total

    def variance_shares(self) -> dict[str, float]:
        """Summed column variances of each term over that of the total."""
        mean = {name: s / self.n for name, s in self.sums.items()}
        variance = {name: float((self.squares[name] / self.n - mean[name] ** 2).sum()) for name in mean}
        total = variance.pop("total")
        return {name: v / total for name, v in variance.items()}


# ---------------------------------------------------------------------------------------- protein
@dataclass(frozen=True)
class _ProteinParameters:
    w_state: np.ndarray  # (n_states, n_proteins)
    w_latent: np.ndarray  # (n_protein_latent, n_proteins)
    w_dxc: np.ndarray  # (n_dxc, n_proteins)
    batch_shift: np.ndarray  # (n_batches, n_proteins)
    staining_level: np.ndarray  # (n_donors,) log staining efficiency
    staining_shift: np.ndarray  # (n_donors, n_proteins) donor-specific staining logit shift
    ambient: np.ndarray  # (n_proteins,) ambient profile (sums to 1)
    batch_background: np.ndarray  # (n_batches,) multiplier of the background level
    theta: np.ndarray  # (n_proteins,)
    protein_only: np.ndarray  # (n_proteins,) bool: extra markers of a twin state (protein-only subtypes)


def _protein_parameters(cfg: SimulationConfig, rng: np.random.Generator, st: _States) -> _ProteinParameters:
    p = cfg.n_proteins
    baseline = rng.normal(0.0, cfg.protein_baseline_sd, p)
    w_state = np.tile(baseline, (cfg.n_states, 1))
    # marker slots: visible states first, then twins; a permutation cycled so markers spread over proteins
    owners = [s for s in st.visible for _ in range(cfg.protein_markers_per_state)]
    owners += [s for s in st.twin for _ in range(max(2, cfg.protein_markers_per_state))]
    order = rng.permutation(p)
    markers_of = {int(s): [] for s in range(cfg.n_states)}
    for slot, s in enumerate(owners):
        markers_of[int(s)].append(int(order[slot % p]))
    for s in st.visible:
        w_state[s, markers_of[int(s)]] += rng.normal(
            cfg.protein_marker_effect, 0.2 * cfg.protein_marker_effect, len(markers_of[int(s)])
        )
    for t, twin in enumerate(st.twin):
        w_state[twin] = w_state[st.dominant[t]]
        w_state[twin, markers_of[int(twin)]] += rng.normal(
            cfg.protein_only_marker_effect, 0.2 * cfg.protein_only_marker_effect, len(markers_of[int(twin)])
        )
    density = rng.random((cfg.n_protein_latent, p)) < cfg.protein_latent_density
    w_latent = rng.normal(0.0, cfg.protein_latent_scale, (cfg.n_protein_latent, p)) * density
    w_dxc = np.zeros((cfg.n_dxc, p))
    for k in range(cfg.n_dxc):
        proteins = rng.choice(p, cfg.dxc_proteins_per_program, replace=False)
        w_dxc[k, proteins] = _signed_magnitudes(rng, proteins.size, cfg.dxc_effect_scale)
    batch_shift = rng.normal(0.0, cfg.batch_effect_sd, (cfg.n_batches, p))
    staining_level = rng.normal(0.0, cfg.staining_efficiency_sd, cfg.n_donors)
    staining_shift = rng.normal(0.0, cfg.staining_protein_sd, (cfg.n_donors, p))
    ambient = _softmax(baseline[None, :] + rng.normal(0.0, 0.3, (1, p)))[0]
    batch_background = rng.lognormal(0.0, 0.2, cfg.n_batches)
    theta = np.exp(rng.normal(np.log(cfg.protein_theta_median), 0.3, p))
    protein_only = np.zeros(p, dtype=bool)
    protein_only[[m for twin in st.twin for m in markers_of[int(twin)]]] = True
    return _ProteinParameters(
        w_state,
        w_latent,
        w_dxc,
        batch_shift,
        staining_level,
        staining_shift,
        ambient,
        batch_background,
        theta,
        protein_only,
    )


def _protein_counts(
    cfg: SimulationConfig,
    rng: np.random.Generator,
    cells: _Cells,
    interaction: np.ndarray,
    prot: _ProteinParameters,
) -> tuple[np.ndarray, np.ndarray]:
    """Foreground NB + ambient Poisson background; returns (counts, mean), both (n_cells, n_proteins)."""
    logits = (
        cells.state @ prot.w_state
        + cells.protein_latent @ prot.w_latent
        + interaction @ prot.w_dxc
        + prot.batch_shift[cells.batch]
        + prot.staining_shift[cells.donor]
    )
    n = logits.shape[0]
    library = np.maximum(
        rng.lognormal(np.log(cfg.protein_library_median), cfg.protein_library_sd, n), cfg.protein_library_min
    ) * np.exp(prot.staining_level[cells.donor])
    foreground = library[:, None] * _softmax(logits)
    level = (
        cfg.background_mean
        * prot.batch_background[cells.batch]
        * rng.lognormal(-(cfg.background_sd**2) / 2, cfg.background_sd, n)
    )
    background = level[:, None] * prot.ambient[None, :]
    counts = _negative_binomial(rng, foreground, prot.theta) + rng.poisson(background)
    return counts, foreground + background


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _negative_binomial(rng: np.random.Generator, mean: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Gamma-Poisson draws with the given mean (n, m) and per-column inverse dispersion theta (m,)."""
    rate = rng.gamma(theta[None, :], mean / theta[None, :])
    return rng.poisson(rate)


def _check_expected_counts(expected_rna: np.ndarray, expected_prot: np.ndarray) -> None:
    """Refuse a cohort whose rarest feature expects too few counts; inputs are (features,) expected totals."""
    for modality, expected in (("RNA", expected_rna), ("protein", expected_prot)):
        per_feature = expected.min()
        if per_feature < _MIN_EXPECTED_FEATURE_COUNT:
            raise ValueError(
                f"the rarest {modality} feature expects only {per_feature:.1f} counts over all cells, so it "
                "could be all zero; raise the number of cells, the library size or gene_baseline_floor"
            )


# --------------------------------------------------------------------------------------- assemble
def _assemble(
    cfg: SimulationConfig,
    donors: pd.Index,
    cells: _Cells,
    st: _States,
    factors: _Factors,
    genotypes: Genotypes,
    rna: _RnaParameters,
    prot: _ProteinParameters,
    rna_counts: sp.csr_matrix,
    prot_counts: sp.csr_matrix,
) -> Cohort:
    n_cells = cells.donor.size
    cell_names = pd.Index(_names("cell", n_cells, 5), name="cell")
    type_names = np.array(_names("ct", cfg.n_cell_types, 1))
    subtype_names = np.char.add(np.char.add(type_names[cells.cell_type], "_s"), cells.subtype.astype(str))
    obs = pd.DataFrame(
        {
            "donor": donors.to_numpy()[cells.donor],
            "cell_type": type_names[cells.cell_type],
            "cell_subtype": subtype_names,
            "batch": np.array(_names("b", cfg.n_batches, 1))[cells.batch],
        },
        index=cell_names,
    )
    genes = pd.Index(_names("g", cfg.n_genes, 4), name="gene")
    proteins = pd.Index(_names("p", cfg.n_proteins, 2), name="protein")
    rna_ad = ad.AnnData(rna_counts, obs=obs.copy(), var=pd.DataFrame(index=genes))
    rna_ad.varm["true_W_C"] = rna.w_state.T
    rna_ad.varm["true_W_DxC"] = rna.w_dxc.T
    rna_ad.varm["true_W_V"] = rna.w_persistent.T
    prot_ad = ad.AnnData(prot_counts, obs=obs.copy(), var=pd.DataFrame(index=proteins))
    prot_ad.var["protein_only_marker"] = prot.protein_only
    prot_ad.varm["true_W_C"] = prot.w_state.T
    prot_ad.varm["true_W_DxC"] = prot.w_dxc.T
    mdata = new_mudata({RNA: rna_ad, PROT: prot_ad})
    mdata.obs = obs.loc[mdata.obs_names]

    dxc_names = [f"dxc_{k}" for k in range(cfg.n_dxc)]
    v_names = [f"v_{j}" for j in range(cfg.n_persistent)]
    truth = Truth(
        cell_state=cells.state,
        donor_factors=pd.DataFrame(factors.dxc, index=donors, columns=dxc_names),
        persistent_factors=pd.DataFrame(factors.persistent, index=donors, columns=v_names),
        causal=factors.causal,
        null_variants=factors.null_variants,
        program_states=factors.program_states,
        program_loadings=pd.DataFrame(rna.w_dxc.T, index=genes, columns=dxc_names),
    )
    return Cohort(
        mdata, genotypes=genotypes, truth=truth, min_cells_per_donor=cfg.min_cells_per_donor, name="sim"
    )
