"""Throughput and memory of the chunked association scan, beside the scan before it and tensorQTL.

    python -m benchmarks.perf.scan_throughput throughput [--threads 1 2] [--repeats 3] [--tensorqtl DIR]
        [--tensorqtl-stub DIR] [--large]
    python -m benchmarks.perf.scan_throughput memory [--folder DIR] [--max-variants 10000000]

``throughput``: factor x variant tests per second at 100 and 1,000 donors x 24 and 100 factors, 3
covariates, every variant tested, for the scan before the chunked driver (``lmm_scan`` of commit
:data:`BEFORE`, loaded from git into a temporary package; dense float64 outputs), the bounded scan
(``keep_all=False``: hits p < 1e-5, float32 products, float64 hits), tensorQTL's trans mode (OLS,
p < 1e-5, float32 on the CPU) when ``--tensorqtl`` points at its unpacked wheel, and a float32 GEMM
of the same shape (the bound). Methods are interleaved, best of ``--repeats``.

``memory``: peak RSS and time of bounded scans (100 donors x 24 factors, kinship LMM) of .bed files of
10^5, 10^6 and 10^7 variants written chunk by chunk with bed-reader's ``create_bed``, each in a fresh
process, then 1,000 donors x 10^6 variants x 100 factors.

tensorQTL is an optional benchmark dependency that is not installed (it would pull its own torch):
``pip download --no-deps tensorqtl`` and unzip the wheel; its ``genotypeio`` imports ``pandas_plink``
at module level (for reading PLINK files, unused here), so give ``--tensorqtl-stub DIR`` a folder with
an empty ``pandas_plink`` package, or install pandas-plink.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from benchmarks.perf.memory import peak_rss_mib
from multilivi.data.genotype_sources import open_bed_by_ranges
from multilivi.eval.association import lmm_scan

BEFORE = "c0982e5"  # main before the chunked driver (issue 15)
N_COVARIATES = 3
N_KINSHIP_VARIANTS = 2_000
THRESHOLD = 1e-5
REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------ inputs
def simulated(n_donors: int, n_factors: int, n_variants: int, seed: int = 0) -> dict:
    """Dosages (no missing calls), a GRM kinship, covariates and factors with a few planted effects."""
    rng = np.random.default_rng(seed)
    freqs = rng.uniform(0.05, 0.5, n_variants + N_KINSHIP_VARIANTS)
    g = rng.binomial(2, freqs, size=(n_donors, freqs.size)).astype(np.float64)
    grm = g[:, n_variants:] - g[:, n_variants:].mean(0)
    grm /= grm.std(0)
    kinship = grm @ grm.T / N_KINSHIP_VARIANTS
    dosage = np.ascontiguousarray(g[:, :n_variants])
    donors = [f"d{i}" for i in range(n_donors)]
    covariates = pd.DataFrame(rng.normal(size=(n_donors, N_COVARIATES)), index=donors)
    covariates.columns = [f"c{i}" for i in range(N_COVARIATES)]
    y = rng.normal(size=(n_donors, n_factors)) + covariates.to_numpy() @ rng.normal(
        size=(N_COVARIATES, n_factors)
    )
    for f in range(n_factors):  # one planted variant per factor
        y[:, f] += 0.5 * (dosage[:, f] - dosage[:, f].mean())
    phenotypes = pd.DataFrame(y, index=donors, columns=[f"F{i}" for i in range(n_factors)])
    variants = [f"v{i}" for i in range(n_variants)]
    return {
        "phenotypes": phenotypes,
        "dosage": dosage,
        "donors": donors,
        "variants": variants,
        "kinship": kinship,
        "covariates": covariates,
    }


def before_module() -> ModuleType:
    """``multilivi.eval.association`` (and its ``lmm``) at :data:`BEFORE`, as package ``scan_before``."""
    folder = Path(tempfile.mkdtemp(prefix="scan_before_")) / "scan_before"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for name in ("association", "lmm"):
        text = subprocess.run(
            ["git", "show", f"{BEFORE}:multilivi/eval/{name}.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (folder / f"{name}.py").write_text(
            text.replace("from multilivi.eval.lmm import", "from scan_before.lmm import")
        )
    sys.path.insert(0, str(folder.parent))
    return importlib.import_module("scan_before.association")


def tensorqtl_trans(source: Path, stub: Path | None) -> ModuleType:
    """TensorQTL's ``trans`` module from an unpacked wheel (its modules import each other top-level)."""
    sys.path[:0] = [str(source / "tensorqtl")] + ([str(stub)] if stub else [])
    return importlib.import_module("trans")


# ------------------------------------------------------------------------------------- throughput
def _timed(run: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = run()
    return time.perf_counter() - start, out


def methods(case: dict, threads: int, before: ModuleType, trans: ModuleType | None) -> dict[str, Callable]:
    """Name -> a callable running that method on ``case`` with ``threads`` threads."""
    common = dict(
        donors=case["donors"], variant_ids=case["variants"], covariates=case["covariates"], n_threads=threads
    )
    ph, g, k = case["phenotypes"], case["dosage"], case["kinship"]
    runs = {
        "before ols": lambda: before.lmm_scan(ph, g, engine="ols", **common),
        "before batched": lambda: before.lmm_scan(ph, g, kinship=k, **common),
        "ols": lambda: lmm_scan(ph, g, engine="ols", keep_all=False, **common),
        "batched": lambda: lmm_scan(ph, g, kinship=k, keep_all=False, **common),
    }
    if trans is not None:
        import torch

        genotype_df = pd.DataFrame(g.T.astype(np.float32), index=case["variants"], columns=case["donors"])
        phenotype_df = ph.T
        covariates_df = case["covariates"]

        def tensorqtl():
            torch.set_num_threads(threads)
            return trans.map_trans(
                genotype_df,
                phenotype_df,
                covariates_df,
                pval_threshold=THRESHOLD,
                maf_threshold=0,
                batch_size=20_000,
                verbose=False,
            )

        runs["tensorqtl"] = tensorqtl
    return runs


def gemm_tests_per_s(n_donors: int, n_factors: int, threads: int, columns: int = 20_000) -> float:
    """Tests/s of one float32 (factors, donors) @ (donors, columns) product: a correlation scan's bound."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n_factors, n_donors)).astype(np.float32)
    b = rng.normal(size=(n_donors, columns)).astype(np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        best = min(_timed(lambda: a @ b)[0] for _ in range(7))
    return n_factors * columns / best


def agreement(ours, theirs: pd.DataFrame) -> dict:
    """Hits of ours (bounded OLS) and tensorQTL's at p < THRESHOLD: counts, common, max |dlog10 p|."""
    mine = ours.bounded.hit_frame(ours.factors, ours.variants).set_index(["factor", "variant"])["pvalue"]
    other = theirs.set_index(["phenotype_id", "variant_id"])["pval"]
    other.index.names = ["factor", "variant"]
    common = mine.index.intersection(other.index)
    delta = np.abs(np.log10(mine.loc[common].to_numpy()) - np.log10(other.loc[common].to_numpy(dtype=float)))
    return {
        "ours": len(mine),
        "tensorqtl": len(other),
        "common": len(common),
        "max_dlog10p": float(delta.max()) if len(common) else float("nan"),
    }


def throughput(args: argparse.Namespace) -> list[dict]:
    before = before_module()
    trans = tensorqtl_trans(args.tensorqtl, args.tensorqtl_stub) if args.tensorqtl else None
    rows = []
    cases = [(n, v, f) for n, v in ((100, 100_000), (1_000, 20_000)) for f in (24, 100)]
    if args.large:  # 10^8 tests: the fixed cost of a scan amortised; the dense "before" scans skipped
        cases.append((100, 1_000_000, 100))
    for n_donors, n_variants, n_factors in cases:
        case = simulated(n_donors, n_factors, n_variants)
        for threads in args.threads:
            runs = methods(case, threads, before, trans)
            if n_variants > 100_000:
                runs = {name: run for name, run in runs.items() if not name.startswith("before")}
            best = dict.fromkeys(runs, np.inf)
            outputs = {}
            for _ in range(args.repeats):  # interleaved
                for name, run in runs.items():
                    seconds, outputs[name] = _timed(run)
                    best[name] = min(best[name], seconds)
            n_tests = n_factors * n_variants
            row = {
                "donors": n_donors,
                "factors": n_factors,
                "variants": n_variants,
                "threads": threads,
                **{name: n_tests / s for name, s in best.items()},
                "gemm32": gemm_tests_per_s(n_donors, n_factors, threads),
                "load": os.getloadavg()[0],
            }
            if trans is not None:
                row["agreement"] = agreement(outputs["ols"], outputs["tensorqtl"])
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------ memory
class BedChunks:
    """A genotype source over a .bed read by variant slices (bed-reader), no .bim/.fam held in memory."""

    def __init__(self, path: Path, n_donors: int, n_variants: int) -> None:
        self.bed = open_bed_by_ranges(path, n_donors, n_variants, num_threads=1)
        self.n_variants = n_variants

    def read(self, start: int, stop: int, *, dtype: type = np.float64) -> np.ndarray:
        return self.bed.read(index=np.s_[:, start:stop], dtype=dtype, num_threads=1)


class Names(Sequence):
    """Variant ids ``v0, v1, ...`` made on demand (10^7 Python strings would be 0.6 GB)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [f"v{j}" for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return f"v{i % self.n}"


def write_bed(path: Path, n_donors: int, n_variants: int, block: int = 100_000) -> None:
    """Random 0/1/2 genotypes written variant by variant with ``create_bed`` (never all in memory)."""
    from bed_reader import create_bed

    rng = np.random.default_rng(0)
    with create_bed(path, iid_count=n_donors, sid_count=n_variants) as bed:
        for start in range(0, n_variants, block):
            m = min(block, n_variants - start)
            for row in rng.binomial(2, rng.uniform(0.05, 0.5, m)[:, None], size=(m, n_donors)).astype(
                np.float32
            ):
                bed.write(row)


def scan_bed(path: Path, n_donors: int, n_variants: int, n_factors: int, variant_minima: bool = True) -> dict:
    """One bounded kinship-LMM scan of a .bed (run in a fresh process): time, peak RSS, tests, hits;
    with or without the per-variant minima (4 B per variant).
    """
    rng = np.random.default_rng(1)
    donors = [f"d{i}" for i in range(n_donors)]
    phenotypes = pd.DataFrame(rng.normal(size=(n_donors, n_factors)), index=donors)
    covariates = pd.DataFrame(rng.normal(size=(n_donors, N_COVARIATES)), index=donors)
    grm = rng.binomial(2, 0.3, size=(n_donors, N_KINSHIP_VARIANTS)).astype(float)
    grm = (grm - grm.mean(0)) / grm.std(0)
    start = time.perf_counter()
    result = lmm_scan(
        phenotypes,
        BedChunks(path, n_donors, n_variants),
        donors=donors,
        variant_ids=Names(n_variants),
        kinship=grm @ grm.T / grm.shape[1],
        covariates=covariates,
        keep_all=False,
        variant_minima=variant_minima,
    )
    seconds = time.perf_counter() - start
    return {
        "donors": n_donors,
        "variants": n_variants,
        "factors": n_factors,
        "variant_minima": variant_minima,
        "seconds": seconds,
        "peak_rss_mib": peak_rss_mib(),
        "n_tests": result.n_tests,
        "n_hits": int(result.bounded.hit_p.size),
        "lambda_gc": result.lambda_gc(),
        "load": os.getloadavg()[0],
    }


def memory(args: argparse.Namespace) -> list[dict]:
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [v for v in (100_000, 1_000_000, 10_000_000) if v <= args.max_variants]
    cases = [(100, v, 24, minima) for minima in (True, False) for v in sizes]
    cases.append((1_000, 1_000_000, 100, True))
    rows = []
    for n_donors, n_variants, n_factors, minima in cases:
        path = folder / f"g{n_donors}x{n_variants}.bed"
        if not path.exists():
            seconds = _timed(lambda p=path, n=n_donors, v=n_variants: write_bed(p, n, v))[0]
            print(f"wrote {path} in {seconds:.0f} s", flush=True)
        command = [
            sys.executable,
            "-m",
            "benchmarks.perf.scan_throughput",
            "scan-bed",
            str(path),
            str(n_donors),
            str(n_variants),
            str(n_factors),
            *([] if minima else ["--no-variant-minima"]),
        ]
        out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    speed = commands.add_parser("throughput")
    speed.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    speed.add_argument("--repeats", type=int, default=3)
    speed.add_argument("--large", action="store_true", help="also 100 donors x 100 factors x 10^6 variants")
    speed.add_argument("--tensorqtl", type=Path, help="folder of the unpacked tensorqtl wheel")
    speed.add_argument("--tensorqtl-stub", type=Path, help="folder holding a stub pandas_plink package")
    mem = commands.add_parser("memory")
    mem.add_argument("--folder", default=tempfile.gettempdir() + "/scan_beds")
    mem.add_argument("--max-variants", type=int, default=10_000_000)
    one = commands.add_parser("scan-bed")
    for name, kind in (("path", Path), ("donors", int), ("variants", int), ("factors", int)):
        one.add_argument(name, type=kind)
    one.add_argument("--no-variant-minima", dest="variant_minima", action="store_false")
    args = parser.parse_args(argv)
    if args.command == "throughput":
        throughput(args)
    elif args.command == "memory":
        memory(args)
    else:
        print(json.dumps(scan_bed(args.path, args.donors, args.variants, args.factors, args.variant_minima)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
