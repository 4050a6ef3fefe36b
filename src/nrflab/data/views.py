"""The four test views of a dataset whose robust and non-robust features are known, as tensors.

``nrflab.data.planted`` builds them; ``nrflab.measure.reliance`` measures a model on them. They live in
``data`` because they are data: a bundle that has them carries them (``DatasetBundle.reliance_views``), and
the trainer attaches the reliance probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nrflab.core.errors import NrflabError

__all__ = ["RelianceViews"]


@dataclass(frozen=True)
class RelianceViews:
    """The test views as tensors (images float in [0,1], classes int64), all on CPU."""

    agree_x: torch.Tensor
    agree_y: torch.Tensor
    rf_x: torch.Tensor
    rf_y: torch.Tensor
    nrf_x: torch.Tensor
    nrf_y: torch.Tensor
    swap_x: torch.Tensor
    swap_rf: torch.Tensor
    swap_nrf: torch.Tensor

    def __post_init__(self) -> None:
        for name in ("agree", "rf", "nrf"):
            x, y = getattr(self, f"{name}_x"), getattr(self, f"{name}_y")
            if x.ndim != 4 or x.shape[0] != y.shape[0]:
                raise NrflabError(f"view {name}: {tuple(x.shape)} images but {tuple(y.shape)} labels")
        if not (self.swap_x.shape[0] == self.swap_rf.shape[0] == self.swap_nrf.shape[0]):
            raise NrflabError("view swap: images and feature classes differ in length")
        if bool((self.swap_rf == self.swap_nrf).any()):
            raise NrflabError("view swap: the RF and NRF classes must differ in every image")

    @property
    def size(self) -> int:
        return int(self.agree_y.shape[0])

    @classmethod
    def from_samples(cls, views: Any, limit: int | None = None) -> RelianceViews:
        """From ``nrflab.data.planted.PlantedViews`` (numpy samples), the first ``limit`` images of each."""
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a[:limit]))  # noqa: E731
        return cls(
            t(views.agree.images),
            t(views.agree.labels),
            t(views.rf.images),
            t(views.rf.labels),
            t(views.nrf.images),
            t(views.nrf.labels),
            t(views.swap.images),
            t(views.swap.rf_class),
            t(views.swap.nrf_class),
        )
