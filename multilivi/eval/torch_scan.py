"""A torch backend of the bounded scan's products: the batched (kinship) and OLS statistic ``u`` on
CUDA when present, else on the CPU.

:class:`TorchEngine` wraps a fitted :class:`~multilivi.eval.lmm.BatchedEngine` or
:class:`~multilivi.eval.lmm.OlsEngine`: its :meth:`~TorchEngine.scan_u` runs the chunk's products
in torch (the rotation of every variant, the weighted phenotype products and the weighted squares;
for OLS the design projection and one product), and everything reported (hits, kept columns)
still comes from the wrapped engine's float64 :meth:`~TorchEngine.scan_chunk`, so a scan gives the
same hits with either backend and histograms equal up to the float32 rounding of ``u``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from numpy.typing import NDArray

from multilivi.eval.lmm import BatchedEngine, OlsEngine, ScanOutput

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


class TorchEngine:
    """``engine``'s statistic computed with torch on ``device`` (default: CUDA when available)."""

    threaded: ClassVar[bool] = False  # one device: chunks run in turn, each product uses the device fully

    def __init__(self, engine: BatchedEngine, device: str | torch.device | None = None) -> None:
        if not isinstance(engine, BatchedEngine):
            raise ValueError(
                f"the torch backend runs the batched and ols engines, not {type(engine).__name__}"
            )
        self.engine = engine
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.delta, self.lml, self.test = engine.delta, engine.lml, engine.test
        self.df, self.n = engine.df, engine.n
        self._operands: dict = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_operands": {}}  # device tensors are rebuilt where unpickled

    def scan_chunk(self, g_std: NDArray[np.float64]) -> ScanOutput:
        """The wrapped engine's float64 p-values, effects and SEs (numpy)."""
        return self.engine.scan_chunk(g_std)

    def scan_u(
        self,
        g: NDArray[np.floating],
        dtype: type = np.float64,
        scale: float = 1.0,
        out: NDArray[np.floating] | None = None,
    ) -> NDArray[np.floating]:
        """(donors, variants) centred variants -> (factors, variants) ``scale * u``, as the engine's."""
        operands = self._device_operands(dtype, scale)
        g = torch.from_numpy(np.ascontiguousarray(g, dtype=dtype)).to(self.device)
        if isinstance(self.engine, OlsEngine):
            basis, y_unit = operands
            norm = torch.sqrt(torch.square(g).sum(dim=0) - torch.square(basis.T @ g).sum(dim=0))
            u = torch.abs(y_unit @ g) * (scale / norm)
        else:
            rotation, wy, w = operands
            g_rot = rotation @ g
            u = torch.abs(wy @ g_rot) / torch.sqrt(w @ torch.square(g_rot))
        result = u.cpu().numpy()
        if out is None:
            return result
        out[...] = result
        return out

    def _device_operands(self, dtype: type, scale: float) -> tuple[torch.Tensor, ...]:
        key = (np.dtype(dtype), scale)
        if key not in self._operands:
            # OLS folds the scale into its column norms; the batched engine into its phenotype side
            arrays = self.engine.u_operands(dtype, 1.0 if isinstance(self.engine, OlsEngine) else scale)
            self._operands[key] = tuple(
                torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays
            )
        return self._operands[key]
