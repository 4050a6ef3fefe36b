"""Report text of the planted experiment's numbers: intervals over seeds, differences, normalization names."""

from __future__ import annotations

from nrflab.experiments.planted.settings import NORM_NAMES


def name(norm: str) -> str:
    return NORM_NAMES.get(norm, norm)


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
