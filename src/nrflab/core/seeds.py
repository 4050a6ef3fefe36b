"""Seeded choices that must be the same everywhere: the seeded subset of N items behind every ``--limit N``.

A test set is often stored sorted by class, so its first N images would be one class; a seeded random
subset kept in the original order is a fair sample, and the same seed picks the same images for every
model (twins, seeds, epochs). This is the only place that draws it: a second copy is a bug, even a
correct one.
"""

from __future__ import annotations

import torch

from nrflab.core.errors import NrflabError


def seeded_subset(n: int, limit: int | None, *, seed: int) -> torch.Tensor | None:
    """The indices of a seeded random subset of ``limit`` of ``n`` items, sorted (the items' own order).

    None means "all of them": ``limit`` is None or not smaller than ``n``. The draw is
    ``torch.randperm(n)`` under a generator seeded with ``seed``, its first ``limit`` entries, sorted.
    """
    if limit is None or limit >= n:
        return None
    if limit < 1:
        raise NrflabError(f"limit must be >= 1, got {limit}")
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[:limit].sort().values


__all__ = ["seeded_subset"]
