"""Cohort data contract, I/O, simulation and held-out splits."""

from multilivi.data.cohort import PROT, RNA, Cohort, ObsKeys
from multilivi.data.datasets import load_dataset
from multilivi.data.genetics import Genotypes, gower_normalise, kinship_from_genotypes, standardised_genotypes
from multilivi.data.simulate import SimulationConfig, simulate, simulate_genotypes
from multilivi.data.split import split_cells
from multilivi.data.truth import Truth

__all__ = [
    "PROT",
    "RNA",
    "Cohort",
    "Genotypes",
    "ObsKeys",
    "SimulationConfig",
    "Truth",
    "gower_normalise",
    "kinship_from_genotypes",
    "load_dataset",
    "simulate",
    "simulate_genotypes",
    "split_cells",
    "standardised_genotypes",
]
