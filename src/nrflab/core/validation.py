"""Checks for numbers and names where they enter nrflab: seeds, devices, finite values.

One definition each, used by configs, the CLI and the library, so every command accepts the same values.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from nrflab.core.errors import NrflabError

SEED_MAX = 2**32 - 1
"""Seeds are integers in 0..2^32-1 everywhere (numpy's and torch's generators both take them)."""

Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
"""A pydantic field type for seeds."""

WIDTH_MAX = 64.0
"""The largest channel-width multiplier accepted (64x ResNet-18 already has ~45 G parameters)."""


def check_seed(value: int, what: str = "seed") -> int:
    """``value`` as a seed, or a one-line error: integers in 0..2^32-1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise NrflabError(f"{what} must be an integer in 0..{SEED_MAX}, got {value!r}")
    return int(value)


def check_positive_int(value: object, what: str, *, minimum: int = 1) -> int:
    """An integer (not a float that happens to be whole, not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise NrflabError(f"{what} must be an integer, got {value!r}")
    if value < minimum:
        raise NrflabError(f"{what} must be >= {minimum}, got {value}")
    return int(value)


DEVICE_HELP = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str | torch.device) -> torch.device:
    """A device nrflab can run on: ``auto`` (CUDA if present), ``cpu``, ``cuda``/``cuda:N`` (checked
    against the GPUs present), ``mps`` where available. Anything else is a one-line error."""
    if isinstance(name, torch.device):
        name = str(name)
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise NrflabError(f"unknown device {name!r}; use {DEVICE_HELP}") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise NrflabError(f"device {name!r} requested but no CUDA GPU is available; use {DEVICE_HELP}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise NrflabError(f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA GPU(s) present")
        return dev
    if dev.type == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise NrflabError(f"device {name!r} requested but this torch has no usable MPS backend; use {DEVICE_HELP}")
        return dev
    raise NrflabError(f"device {name!r} cannot run nrflab; use {DEVICE_HELP}")


__all__ = [
    "DEVICE_HELP",
    "SEED_MAX",
    "Seed",
    "WIDTH_MAX",
    "check_device_name",
    "check_positive_int",
    "check_seed",
    "resolve_device",
]


def check_device_name(name: str, *, remote: bool = False) -> None:
    """A device a run may use, checked before anything runs. ``remote``: the runs go to other machines (a Ray
    cluster), so ``cuda`` is accepted without a GPU here; runs on this machine (``remote=False``, the local
    backend) need the GPU here. Every other name must resolve on this machine (``mps``, ``meta``, typos are
    refused)."""
    text = name.strip().lower()
    if text.startswith("cuda"):
        try:
            torch.device(text)  # parses cuda / cuda:N without needing a GPU
        except RuntimeError:
            raise NrflabError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
        if not remote and not torch.cuda.is_available():
            raise NrflabError(
                f"device {name!r}: this machine has no CUDA GPU; use --device cpu or auto "
                "(or --backend ray to run on a cluster with GPUs)"
            )
        if not remote:
            resolve_device(text)
        return
    resolve_device(name)
