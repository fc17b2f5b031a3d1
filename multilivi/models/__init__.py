"""LIVI, MultiSLIVI and DMLIVI behind one interface (:class:`LatentModel`), and their registry."""

from multilivi.models.base import LatentModel, ModelBase, ModelConfig
from multilivi.models.dmlivi import DMLIVI, DMLIVIConfig
from multilivi.models.livi import LIVI, LIVIConfig
from multilivi.models.mslivi import MultiSLIVI, MultiSLIVIConfig
from multilivi.models.registry import FAMILIES, get_family
from multilivi.models.train import Stage, TrainConfig, stage_at

__all__ = [
    "DMLIVI",
    "FAMILIES",
    "LIVI",
    "DMLIVIConfig",
    "LIVIConfig",
    "LatentModel",
    "ModelBase",
    "ModelConfig",
    "MultiSLIVI",
    "MultiSLIVIConfig",
    "Stage",
    "TrainConfig",
    "get_family",
    "stage_at",
]
