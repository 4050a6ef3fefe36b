"""The records of corruption accuracy (:mod:`nrflab.measure.corruptions`): plain dicts as ``evaluate
--corruptions`` writes them to JSON, typed so the library reads their fields by name."""

from __future__ import annotations

from typing import TypedDict


class CorruptionRow(TypedDict):
    """Top-1 accuracy under one corruption at one severity."""

    corruption: str
    severity: int
    accuracy: float


class Means(TypedDict):
    """Mean accuracy over all rows, per corruption and per severity."""

    mean: float
    per_corruption: dict[str, float]
    per_severity: dict[int, float]


class CorruptionReport(TypedDict):
    """Every row and their means."""

    rows: list[CorruptionRow]
    summary: Means


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
