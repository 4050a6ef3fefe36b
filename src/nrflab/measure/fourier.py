"""Fourier heat maps (Yin et al., "A Fourier Perspective on Model Robustness in Computer Vision", NeurIPS 2019).

For every frequency k = (ky, kx) of the image grid up to Nyquist, each test image is perturbed by
``r * eps * U_k`` with ``U_k`` the real Fourier basis image of unit L2 norm (``cos(2 pi (ky m / H + kx n / W))``,
normalized: its spectrum is non-zero at k and -k only) and r a seeded random sign per image, as in the paper;
the result is clipped to [0,1] and the model's error rate and mean cross-entropy increase are recorded. ``U_k``
and ``U_-k`` are the same image, so only the symmetric half of the spectrum is evaluated and the full centred
map is filled by symmetry. By default every channel gets the same pattern and sign (the perturbation's L2 norm
is then ``eps * sqrt(C)``); ``per_channel=True`` draws an independent sign per channel, the paper's variant.

Why: a model that errs under high-frequency patterns of small norm relies on features a human does not see;
:meth:`FourierHeatMap.high_frequency_share` condenses a map into the share of its excess error above a
declared radius. The basis is built once; (frequency, image) pairs are evaluated in chunks of ``batch_size``.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from nrflab.core.errors import NrflabError
from nrflab.core.modules import frozen_model, model_device
from nrflab.core.records import record
from nrflab.measure.spectrum import centred_frequencies

Precision = Literal["float32", "bfloat16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

__all__ = ["FourierHeatMap", "fourier_heat_map"]


def half_spectrum(height: int, width: int) -> list[tuple[int, int]]:
    """One frequency (ky, kx) of each pair {k, -k} of the centred ``height x width`` grid, in row-major order.

    ``-k`` is taken modulo the grid, so an even axis's Nyquist frequency ``-n/2`` is its own negative.
    A pair keeps the member that comes first in the centred grid's row-major order.
    """
    ky_axis, kx_axis = centred_frequencies(height).tolist(), centred_frequencies(width).tolist()
    seen: set[tuple[int, int]] = set()
    half = []
    for ky in ky_axis:
        for kx in kx_axis:
            if (ky, kx) not in seen:
                half.append((ky, kx))
                seen.add((ky, kx))
                seen.add((_wrap(-ky, height), _wrap(-kx, width)))
    return half


def _wrap(k: int, size: int) -> int:
    """Frequency ``k`` moved into the centred range ``[-(size // 2), (size - 1) // 2]``."""
    return (k + size // 2) % size - size // 2


def fourier_basis(height: int, width: int, frequencies: list[tuple[int, int]] | None = None) -> Tensor:
    """Unit-L2 real Fourier basis images, F x H x W float64, one per frequency (default: :func:`half_spectrum`).

    The images of distinct frequencies that are not each other's negatives are orthogonal.
    """
    freqs = frequencies if frequencies is not None else half_spectrum(height, width)
    ky = torch.tensor([f[0] for f in freqs], dtype=torch.float64)[:, None, None]
    kx = torch.tensor([f[1] for f in freqs], dtype=torch.float64)[:, None, None]
    m = torch.arange(height, dtype=torch.float64)[None, :, None]
    n = torch.arange(width, dtype=torch.float64)[None, None, :]
    basis = torch.cos(2 * math.pi * (ky * m / height + kx * n / width))
    unit: Tensor = basis / torch.linalg.vector_norm(basis.flatten(1), dim=1)[:, None, None]
    return unit


@record
class FourierHeatMap:
    """A model's Fourier heat map: error rate and mean loss increase per frequency of the centred spectrum.

    ``error[a][b]`` and ``loss_increase[a][b]`` belong to frequency ``(freqs_y[a], freqs_x[b])`` in cycles per
    image; the grid is symmetric (k and -k share a basis image). ``clean_error`` and ``clean_loss`` are the
    unperturbed model's on the same images.
    """

    model: str
    eps: float
    n_images: int
    per_channel: bool
    seed: int
    clean_error: float
    clean_loss: float
    freqs_y: tuple[int, ...]
    freqs_x: tuple[int, ...]
    error: tuple[tuple[float, ...], ...]
    loss_increase: tuple[tuple[float, ...], ...]

    def rows(self) -> list[tuple[int, int, float, float, float]]:
        """One ``(ky, kx, radius, error, loss_increase)`` per evaluated frequency (the symmetric half)."""
        ya, xa = self.freqs_y[0], self.freqs_x[0]
        out = []
        for ky, kx in half_spectrum(len(self.freqs_y), len(self.freqs_x)):
            a, b = ky - ya, kx - xa
            if math.isnan(self.error[a][b]):
                continue
            out.append((ky, kx, math.hypot(ky, kx), self.error[a][b], self.loss_increase[a][b]))
        return out

    def high_frequency_share(self, band_split: float) -> float:
        """Share of the excess error mass (error above ``clean_error``) at radius > ``band_split`` cycles per image.

        Each basis image counts once (the symmetric half). NaN when no frequency raises the error.
        """
        if not band_split >= 0:
            raise NrflabError(f"band_split must be a radius >= 0 in cycles per image, got {band_split}")
        excess = [(radius, max(err - self.clean_error, 0.0)) for _, _, radius, err, _ in self.rows()]
        total = sum(e for _, e in excess)
        if total <= 0:
            return math.nan
        return sum(e for radius, e in excess if radius > band_split) / total


def _check_inputs(x: Tensor, y: Tensor, eps: float, batch_size: int, stride: int, precision: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point() or not len(x):
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise NrflabError(f"a Fourier heat map needs non-empty float images (N, C, H, W) in [0,1], got {got}")
    if not isinstance(y, Tensor) or y.shape != (len(x),):
        raise NrflabError(f"labels must be a tensor of shape ({len(x)},)")
    if not (eps > 0 and math.isfinite(eps)):
        raise NrflabError(f"eps must be > 0, got {eps}")
    if batch_size < 1:
        raise NrflabError(f"batch_size must be at least 1, got {batch_size}")
    if stride < 1:
        raise NrflabError(f"stride must be at least 1, got {stride}")
    if precision not in PRECISIONS:
        raise NrflabError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def _clean(model: nn.Module, x: Tensor, y: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    """Per-image wrong (bool) and cross-entropy of the unperturbed images."""
    wrong, loss = [], []
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        wrong.append(logits.argmax(dim=1) != target)
        loss.append(F.cross_entropy(logits.float(), target, reduction="none"))
    return torch.cat(wrong), torch.cat(loss)


def fourier_heat_map(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    name: str = "model",
    per_channel: bool = False,
    seed: int = 0,
    batch_size: int = 512,
    precision: Precision = "float32",
    freeze: bool = False,
    stride: int = 1,
    progress: bool = False,
) -> FourierHeatMap:
    """The Fourier heat map of ``model`` (which takes [0,1] images) on images ``x`` with labels ``y``.

    Runs on the model's device in eval mode without gradients; the model's mode and flags are restored.
    ``batch_size`` is the number of perturbed images per forward pass. ``precision="bfloat16"`` runs the
    model under bfloat16 autocast (several times faster on CPUs with AMX and on GPUs; error rates then
    differ from float32's by the images whose margin is below bfloat16's resolution). ``freeze=True`` runs a
    frozen TorchScript graph of the eval model (convolution and BN folded, about 2x faster on CPUs) when its
    predictions on the clean images equal the model's, else the model itself; its logits differ from the
    model's in the last float32 bits, so an image whose margin is below that resolution may flip. ``stride``
    > 1 evaluates only the frequencies whose both coordinates are multiples of it (a coarser grid, about
    ``stride**2`` times cheaper); the other cells of the map are NaN.
    """
    _check_inputs(x, y, eps, batch_size, stride, precision)
    device = model_device(model)
    n, c, h, w = x.shape
    freqs = [f for f in half_spectrum(h, w) if f[0] % stride == 0 and f[1] % stride == 0]
    dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    basis = fourier_basis(h, w, freqs).to(device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (len(freqs), n, c if per_channel else 1), generator=gen).to(device, dtype) * 2 - 1
    x, y = x.to(device=device, dtype=dtype), y.to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")
    with frozen_model(model), torch.inference_mode(), autocast:
        clean_wrong, clean_loss = _clean(model, x, y, batch_size)
        if freeze and precision == "float32":
            model = _frozen_graph(model, x, y, clean_wrong, batch_size)
        wrong, loss = _sweep(model, x, y, eps * signs, basis, clean_loss, batch_size=batch_size, progress=progress)
    return _record(
        model=name,
        eps=eps,
        x=x,
        per_channel=per_channel,
        seed=seed,
        freqs=freqs,
        wrong=wrong,
        loss=loss,
        clean=(clean_wrong, clean_loss),
    )


def _sweep(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    steps: Tensor,
    basis: Tensor,
    clean_loss: Tensor,
    *,
    batch_size: int,
    progress: bool,
) -> tuple[Tensor, Tensor]:
    """Per frequency: the error rate and mean loss increase over the images, each perturbed by its signed step
    (``steps[f, i]``, one per channel or shared) times the basis image ``basis[f]``; (frequency, image) pairs
    in chunks of ``batch_size``."""
    n, c = x.shape[:2]
    layout = torch.channels_last if c > 1 else torch.contiguous_format  # one channel: channels_last is slower
    wrong_sum = torch.zeros(len(basis), dtype=torch.float64, device=x.device)
    loss_sum = torch.zeros_like(wrong_sum)
    total = len(basis) * n
    for start in tqdm(range(0, total, batch_size), desc="fourier", disable=not progress, leave=False):
        pair = torch.arange(start, min(start + batch_size, total), device=x.device)
        f, i = pair // n, pair % n
        step = steps[f, i][:, :, None, None] * basis[f][:, None]
        logits = model((x[i] + step).clamp_(0, 1).contiguous(memory_format=layout))
        loss = F.cross_entropy(logits.float(), y[i], reduction="none") - clean_loss[i]
        wrong_sum.index_add_(0, f, (logits.argmax(dim=1) != y[i]).double())
        loss_sum.index_add_(0, f, loss.double())
    return wrong_sum / n, loss_sum / n


def _frozen_graph(model: nn.Module, x: Tensor, y: Tensor, clean_wrong: Tensor, batch_size: int) -> nn.Module:
    """A frozen, inference-optimized TorchScript graph of the eval ``model`` when it predicts the clean images
    as the model does, else ``model`` (a model TorchScript cannot trace is used as it is)."""
    try:
        with torch.no_grad():
            graph = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model.eval(), x[:2])))
        wrong, _ = _clean(graph, x, y, batch_size)
    except Exception:  # any tracing failure means: use the model itself
        return model
    return graph if torch.equal(wrong, clean_wrong) else model


def _record(
    *,
    model: str,
    eps: float,
    x: Tensor,
    per_channel: bool,
    seed: int,
    freqs: list[tuple[int, int]],
    wrong: Tensor,
    loss: Tensor,
    clean: tuple[Tensor, Tensor],
) -> FourierHeatMap:
    """Fill the full centred grid from the symmetric half and freeze it into a record."""
    h, w = x.shape[-2:]
    ky_axis, kx_axis = centred_frequencies(h).tolist(), centred_frequencies(w).tolist()
    err_grid = torch.full((h, w), math.nan, dtype=torch.float64)  # cells off a coarse grid stay NaN
    loss_grid = torch.full_like(err_grid, math.nan)
    for (ky, kx), e, dl in zip(freqs, wrong.cpu().tolist(), loss.cpu().tolist()):
        for fy, fx in ((ky, kx), (_wrap(-ky, h), _wrap(-kx, w))):
            err_grid[fy - ky_axis[0], fx - kx_axis[0]] = e
            loss_grid[fy - ky_axis[0], fx - kx_axis[0]] = dl
    return FourierHeatMap(
        model=model,
        eps=float(eps),
        n_images=int(x.shape[0]),
        per_channel=per_channel,
        seed=int(seed),
        clean_error=float(clean[0].double().mean()),
        clean_loss=float(clean[1].double().mean()),
        freqs_y=tuple(int(k) for k in ky_axis),
        freqs_x=tuple(int(k) for k in kx_axis),
        error=tuple(tuple(row) for row in err_grid.tolist()),
        loss_increase=tuple(tuple(row) for row in loss_grid.tolist()),
    )
