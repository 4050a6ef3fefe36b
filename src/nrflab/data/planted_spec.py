"""What a planted dataset is: its parameters (:class:`PlantedSpec`), the named variants, the parameters read
from a dataset name (``planted:variant=drand,a_n=0.2``) with their checks, the DCT bands, and the canonical
name of a spec. The generator and the dataset registration live in :mod:`nrflab.data.planted`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from nrflab.core.errors import NrflabError

SIZES = (16, 28, 32)
BANDS = ("low", "mid", "high")
RF_SOURCES = ("synthetic", "mnist")

#: Named variants: parameter values over the defaults; explicit parameters win. ``p_r = "chance"`` means
#: ``1 / classes`` (the RF class independent of the label).
VARIANTS: dict[str, dict[str, float | str]] = {
    "redundant": {"p_r": 1.0, "p_n": 1.0},
    "nrf-predictive": {"p_r": 0.8, "p_n": 1.0},
    "rf-predictive": {"p_r": 1.0, "p_n": 0.8},
    "drand": {"p_r": "chance", "p_n": 1.0},
    "conflicting": {"p_r": 0.0, "rf_shift": -1, "p_n": 1.0},
    "rf-alone": {"p_r": 1.0, "a_n": 0.0},
    "nrf-alone": {"p_n": 1.0, "a_r": 0.0},
    # Controls that separate robustness from availability (at the nrf-predictive operating point):
    "control-large": {"p_r": 0.8, "p_n": 1.0, "a_n": 2.0},  # robust, still high-frequency
    "control-mid": {"p_r": 0.8, "p_n": 1.0, "nrf_band": "mid"},  # non-robust, mid-frequency
    "control-noise": {"p_r": 0.8, "p_n": 1.0, "noise": 0.05},  # same NRF norm, less available
}


@dataclass(frozen=True)
class PlantedSpec:
    """Every parameter of a planted dataset (all recorded in ``bundle.info``).

    ``a_r``/``a_n`` are L2 norms over the whole C x S x S image; ``None`` for ``a_r`` means 6 * size / 32.
    """

    variant: str = "redundant"
    rf: Literal["synthetic", "mnist"] = "synthetic"
    size: int = 32
    channels: int = 3
    classes: int = 10
    a_r: float | None = None
    a_n: float = 0.35
    p_r: float = 1.0
    p_n: float = 1.0
    rf_shift: int = 0
    rf_band: Literal["low", "mid", "high"] = "low"
    nrf_band: Literal["low", "mid", "high"] = "high"
    jitter: float = 0.2
    shift: int | None = None
    bg_std: float = 0.08
    color: float = 0.1
    noise: float = 0.0
    margin: float | None = None
    train: int = 5000
    test: int = 1000
    seed: int = 0
    sample_seed: int = 0

    @property
    def rf_amplitude(self) -> float:
        return float(self.a_r) if self.a_r is not None else 6.0 * self.size / 32

    @property
    def digit_margin(self) -> float:
        """MNIST variant: digits are rescaled to [margin, 1 - margin]; by default four standard deviations
        of the NRF-plus-noise pixel values (at least 0.1), so an NRF of either sign survives clipping."""
        if self.margin is not None:
            return float(self.margin)
        pixel_std = math.hypot(self.a_n / self.size, self.noise)
        return float(min(0.45, max(0.1, 4 * pixel_std)))

    @property
    def preset(self) -> str:
        """The old name of :attr:`variant`."""
        return self.variant

    @property
    def max_shift(self) -> int:
        return int(self.shift) if self.shift is not None else int(round(3 * self.size / 32 + 1e-9))

    def resolved(self) -> dict[str, object]:
        """All parameters with defaults filled in (what the dataset card records)."""
        out = asdict(self)
        out.update(a_r=self.rf_amplitude, shift=self.max_shift)
        if self.rf == "mnist":
            out.update(
                channels=1,
                classes=10,
                a_r=None,
                rf_band=None,
                jitter=None,
                shift=None,
                bg_std=None,
                color=None,
                margin=self.digit_margin,
            )
        else:
            out.update(margin=None)
        return out


# ---------------------------------------------------------------------------------------------
# Parameters from a dataset name


_FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "a_r": (0.0, 100.0),
    "a_n": (0.0, 100.0),
    "p_r": (0.0, 1.0),
    "p_n": (0.0, 1.0),
    "jitter": (0.0, 0.9),
    "bg_std": (0.0, 0.3),
    "color": (0.0, 0.3),
    "noise": (0.0, 0.5),
    "margin": (0.0, 0.45),
}
_INT_RANGES: dict[str, tuple[int, int]] = {
    "channels": (1, 3),
    "classes": (2, 100),
    "rf_shift": (-99, 99),
    "shift": (0, 8),
    "train": (1, 200_000),
    "test": (1, 100_000),
    "seed": (0, 2**31 - 1),
    "sample_seed": (0, 2**31 - 1),
    "size": (1, 10_000),
}
_CHOICES: dict[str, tuple[str, ...]] = {"rf": RF_SOURCES, "rf_band": BANDS, "nrf_band": BANDS}
PARAMETERS = ("variant", *sorted([*_FLOAT_RANGES, *_INT_RANGES, *_CHOICES]))
OLD_VARIANT_KEY = "preset"
"""The old spelling of ``variant=`` in planted names (still accepted, with a deprecation line)."""


def _renamed_variant(params: dict[str, str]) -> dict[str, str]:
    """``preset=`` read as ``variant=`` (with a deprecation line); both at once is an error."""
    if OLD_VARIANT_KEY not in params:
        return params
    if "variant" in params:
        raise NrflabError("planted: give variant= only (preset= is its old spelling)")
    warnings.warn(
        "planted: 'preset=' is now spelled 'variant=' (e.g. planted:variant=drand); the old spelling still works",
        FutureWarning,
        stacklevel=3,
    )
    return {("variant" if k == OLD_VARIANT_KEY else k): v for k, v in params.items()}


def spec_from_params(params: dict[str, str]) -> PlantedSpec:
    """Validate ``name:key=value`` parameters and resolve them over the variant and the defaults.

    Every problem is a one-line ``NrflabError`` naming the accepted choices.
    """
    params = _renamed_variant(params)
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise NrflabError(f"unknown planted parameter {unknown[0]!r}; choose from {', '.join(PARAMETERS)}")
    variant = params.get("variant", "redundant").lower()
    if variant not in VARIANTS:
        raise NrflabError(f"unknown planted variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    values: dict[str, Any] = {"variant": variant}  # user text checked per key below; PlantedSpec(**) types it
    for key, text in params.items():
        if key == "variant":
            continue
        if key in _FLOAT_RANGES:
            values[key] = _parse_number(key, text, *_FLOAT_RANGES[key], integer=False)
        elif key in _INT_RANGES:
            values[key] = _parse_number(key, text, *_INT_RANGES[key], integer=True)
        else:
            choice = text.lower()
            if choice not in _CHOICES[key]:
                raise NrflabError(f"planted parameter {key} must be one of {', '.join(_CHOICES[key])}, got {text!r}")
            values[key] = choice
    merged = {**VARIANTS[variant], **values}
    if merged.get("rf") == "mnist":  # the digits fix channels and classes; native size, all digits
        for key, value in (("channels", 1), ("size", 28), ("train", 4000)):
            merged.setdefault(key, value)
    classes = int(merged.get("classes", PlantedSpec.classes))
    if merged.get("p_r") == "chance":
        merged["p_r"] = 1.0 / classes
    spec = PlantedSpec(**merged)
    check_spec(spec)
    return spec


def _parse_number(key: str, text: str, lo: float, hi: float, *, integer: bool) -> float:
    """``text`` as an int (``integer``) or a float in ``[lo, hi]``, or one error line naming the range."""
    try:
        value: float = int(text) if integer else float(text)
    except ValueError:
        value = math.nan
    if not (lo <= value <= hi):
        what = f"an integer in [{lo}, {hi}]" if integer else f"a number in [{lo:g}, {hi:g}]"
        raise NrflabError(f"planted parameter {key} must be {what}, got {text!r}")
    return value


def check_spec(spec: PlantedSpec) -> None:
    """Cross-parameter checks (one line each): sizes, band capacity, MNIST limits."""
    if spec.size not in SIZES:
        raise NrflabError(f"planted parameter size must be one of {', '.join(map(str, SIZES))}, got {spec.size}")
    if spec.margin is not None and spec.rf != "mnist":
        raise NrflabError("planted parameter margin applies to rf=mnist only")
    if spec.rf == "mnist":
        if spec.classes != 10 or spec.channels not in (1,):
            raise NrflabError("planted rf=mnist has 10 classes and 1 channel; drop classes/channels")
        if spec.train > 4000 or spec.test > 1000:
            raise NrflabError(
                f"planted rf=mnist has at most 4000 training and 1000 test digits, "
                f"got train={spec.train}, test={spec.test}"
            )
    for what, band, size in (("nrf_band", spec.nrf_band, spec.size), ("rf_band", spec.rf_band, spec.size)):
        if what == "rf_band" and spec.rf == "mnist":
            continue
        dims = int(band_mask(band, size).sum()) * spec.channels
        if dims < spec.classes:
            raise NrflabError(
                f"the {band} band of a {size}x{size} image holds {dims} DCT directions, fewer than "
                f"classes={spec.classes}; use fewer classes or more channels"
            )
    if spec.rf != "mnist" and spec.rf_band == spec.nrf_band:
        raise NrflabError(f"rf_band and nrf_band are both {spec.rf_band!r}; the features need different bands")


def band_mask(band: str, size: int) -> np.ndarray:
    """Boolean (size x size) mask of DCT indices (u, v) in a band, by ``u + v``.

    low: 1 <= u+v <= 4 (a few cycles per image; DC excluded: it is the colour offset), mid:
    0.45 (S-1) <= u+v <= 0.6 (S-1), high: u+v >= 1.5 (S-1) (the finest checkerboard-like patterns).
    """
    u, v = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    s = u + v
    if band == "low":
        return (s >= 1) & (s <= 4)
    if band == "mid":
        return (s >= math.ceil(0.45 * (size - 1))) & (s <= math.floor(0.6 * (size - 1)))
    if band == "high":
        return s >= math.ceil(1.5 * (size - 1))
    raise NrflabError(f"unknown band {band!r}; choose one of {', '.join(BANDS)}")


def dataset_name(spec: PlantedSpec) -> str:
    """The canonical name of a spec: the variant, then only the parameters that differ from its values.

    ``load_dataset(dataset_name(spec))`` generates the same data as ``spec``.
    """
    params = {"variant": spec.variant, **({"rf": "mnist"} if spec.rf == "mnist" else {"classes": str(spec.classes)})}
    base = spec_from_params(params)
    parts = [f"variant={spec.variant}"] + (["rf=mnist"] if spec.rf == "mnist" else [])
    for key, value in asdict(spec).items():
        if key not in ("variant", "rf") and getattr(base, key) != value:
            parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    return "planted:" + ",".join(parts)


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
