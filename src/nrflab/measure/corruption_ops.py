"""Batched torch building blocks of the CIFAR-10-C corruptions (:mod:`nrflab.measure.corruptions`).

Each block re-implements one step of Hendrycks & Dietterich's ``make_cifar_c.py`` (and the libraries it calls:
skimage's ``gaussian``, scipy's ``zoom`` and ``map_coordinates``, OpenCV's ``warpAffine``, ImageMagick's
motion blur) on N x C x H x W tensors, with every random draw taken from one ``torch.Generator`` so a batch
is reproducible from a seed. Why here and not in the corruptions module: the corruptions read as their
formulas, the resampling and filtering details live once.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

#: Per-channel mean of the six ImageNet-C frost photographs (scaled by 0.2 as make_cifar_c.py does), RGB.
FROST_MEAN = (0.57, 0.66, 0.70)
#: Standard deviation within a 32 x 32 crop of those photographs (about the same in every channel).
FROST_STD = 0.09
#: Spread of the mean brightness between the photographs (0.30 to 0.84 in red), as a uniform half-width.
FROST_SPREAD = 0.15


def per_channel(x: Tensor) -> Tensor:
    """View N x C x H x W as (N*C) x 1 x H x W so one single-channel kernel filters every channel."""
    return x.reshape(-1, 1, *x.shape[-2:])


def gaussian_taps(sigma: float, radius: int, like: Tensor) -> Tensor:
    """Normalized 1-D Gaussian weights at offsets -radius..radius."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (taps / taps.sum()).to(device=like.device, dtype=like.dtype)


def _symmetric_index(size: int, pad: int, device: torch.device) -> Tensor:
    """Indices of an axis padded by ``pad`` with half-sample symmetric reflection (scipy's ``reflect``)."""
    idx = torch.arange(-pad, size + pad, device=device) % (2 * size)
    return torch.where(idx < size, idx, 2 * size - 1 - idx)


def gaussian_blur(x: Tensor, sigma: float, *, truncate: float = 4.0, mode: str = "nearest") -> Tensor:
    """Separable Gaussian blur of every channel, as skimage's ``gaussian`` (``mode`` nearest or reflect)."""
    radius = int(truncate * sigma + 0.5)
    taps = gaussian_taps(sigma, radius, x)
    flat = per_channel(x)
    if mode == "nearest":
        flat = F.pad(flat, (radius, radius, radius, radius), mode="replicate")
    else:
        h, w = flat.shape[-2:]
        flat = flat[:, :, _symmetric_index(h, radius, x.device)][:, :, :, _symmetric_index(w, radius, x.device)]
    flat = F.conv2d(F.conv2d(flat, taps.view(1, 1, -1, 1)), taps.view(1, 1, 1, -1))
    return flat.view(x.shape)


def zoom_matrix(size: int, zoom: float, like: Tensor) -> Tensor:
    """One axis of make_cifar_c's ``clipped_zoom`` as a size x size matrix.

    The central ``ceil(size / zoom)`` pixels are resampled by ``scipy.ndimage.zoom(order=1)`` to
    ``round(crop * zoom)`` pixels (output o reads input ``o * (crop - 1) / (out - 1)``), then the centre
    ``size`` of them are kept.
    """
    crop = int(math.ceil(size / zoom))
    top = (size - crop) // 2
    out = int(round(crop * zoom))
    trim = (out - size) // 2
    pos = torch.arange(trim, trim + size, dtype=torch.float64) * ((crop - 1) / max(out - 1, 1))
    lo = pos.floor().clamp(max=crop - 1)
    frac = pos - lo
    hi = (lo + 1).clamp(max=crop - 1)
    matrix = torch.zeros(size, size, dtype=torch.float64)
    rows = torch.arange(size)
    matrix.index_put_((rows, top + lo.long()), 1 - frac, accumulate=True)
    matrix.index_put_((rows, top + hi.long()), frac, accumulate=True)
    return matrix.to(device=like.device, dtype=like.dtype)


def clipped_zoom(x: Tensor, zoom: float) -> Tensor:
    """Zoom into the centre of every image by ``zoom`` >= 1, keeping the size (make_cifar_c's ``clipped_zoom``)."""
    h, w = x.shape[-2:]
    return zoom_matrix(h, zoom, x) @ x @ zoom_matrix(w, zoom, x).T


def motion_blur(x: Tensor, radius: float, sigma: float, angles: Tensor) -> Tensor:
    """ImageMagick's ``-motion-blur radius x sigma + angle``: a one-sided Gaussian streak, one angle per image.

    Taps i = 0 .. 2 * ceil(radius) read the pixel ``ceil(i * (cos a, sin a) - 0.5)`` away (x right, y down),
    weighted ``exp(-i^2 / (2 sigma^2))`` and normalized; the border pixels extend outwards (ImageMagick's
    ``edge`` virtual pixels).
    """
    width = 2 * int(math.ceil(radius)) + 1
    profile = torch.exp(-(torch.arange(width, dtype=torch.float64) ** 2) / (2 * sigma**2))
    taps = (profile / profile.sum()).tolist()
    n, c, h, w = x.shape
    rad = torch.deg2rad(angles.to(torch.float64))
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    flat = x.reshape(n, c, h * w)
    out = torch.zeros_like(flat)
    for i, weight in enumerate(taps):
        dy = torch.ceil(i * torch.sin(rad) - 0.5).long().to(x.device).view(n, 1, 1)
        dx = torch.ceil(i * torch.cos(rad) - 0.5).long().to(x.device).view(n, 1, 1)
        index = (rows + dy).clamp(0, h - 1) * w + (cols + dx).clamp(0, w - 1)
        out += weight * flat.gather(2, index.view(n, 1, h * w).expand(n, c, h * w))
    return out.view(x.shape)


def plasma_fractal(
    n: int, mapsize: int, decay: float, generator: torch.Generator, like: Tensor, *, crop: tuple[int, int]
) -> Tensor:
    """The top-left ``crop`` of n diamond-square height maps (make_cifar_c's ``plasma_fractal``), each map
    mapsize x mapsize (a power of two) and scaled to [0,1] as a whole; made 16 maps at a time to bound memory."""
    chunks = [
        _plasma(min(16, n - start), mapsize, decay, generator)[:, : crop[0], : crop[1]] for start in range(0, n, 16)
    ]
    return torch.cat(chunks).to(device=like.device, dtype=like.dtype)


def _plasma(n: int, mapsize: int, decay: float, generator: torch.Generator) -> Tensor:
    maps = torch.zeros(n, mapsize, mapsize, dtype=torch.float64)
    step, wibble = mapsize, 100.0

    def wibbled_mean(total: Tensor) -> Tensor:
        noise = torch.rand(total.shape, generator=generator, dtype=torch.float64) * 2 - 1
        return total / 4 + wibble * wibble * noise

    while step >= 2:
        half = step // 2
        corners = maps[:, ::step, ::step]
        squares = corners + corners.roll(-1, dims=1)
        maps[:, half::step, half::step] = wibbled_mean(squares + squares.roll(-1, dims=2))
        centres, corners = maps[:, half::step, half::step], maps[:, ::step, ::step]
        left = centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        maps[:, ::step, half::step] = wibbled_mean(left)
        top = centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        maps[:, half::step, ::step] = wibbled_mean(top)
        step, wibble = half, wibble / decay
    maps = maps - maps.amin(dim=(1, 2), keepdim=True)
    return maps / maps.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)


def glass_permutation(n: int, h: int, w: int, delta: int, iterations: int, generator: torch.Generator) -> Tensor:
    """Where each pixel comes from after make_cifar_c's local shuffle, n x (h*w) flat indices.

    For h from ``h - delta`` down to ``delta + 1`` and w likewise (``iterations`` times), pixel (h, w) swaps
    with (h + dy, w + dx), dx and dy drawn from ``-delta .. delta - 1`` (numpy's ``randint(-d, d)``).
    """
    perm = torch.arange(h * w).repeat(n, 1)
    ys, xs = range(h - delta, delta, -1), range(w - delta, delta, -1)
    draws = torch.randint(-delta, delta, (iterations, len(ys), len(xs), 2, n), generator=generator)
    batch = torch.arange(n)
    for it in range(iterations):
        for a, row in enumerate(ys):
            for b, col in enumerate(xs):
                p = row * w + col
                q = (row + draws[it, a, b, 1]) * w + col + draws[it, a, b, 0]
                here, there = perm[:, p].clone(), perm[batch, q]
                perm[:, p] = there
                perm[batch, q] = here
    return perm


def _sample(x: Tensor, ys: Tensor, xs: Tensor, *, align_corners: bool) -> Tensor:
    """Bilinear samples of every image at pixel coordinates (ys, xs) (N x H x W each), mirrored borders.

    ``align_corners=True`` mirrors about the border pixels' centres (OpenCV's ``BORDER_REFLECT_101``),
    ``False`` about the image edges (scipy's ``reflect``).
    """
    h, w = x.shape[-2:]
    if align_corners:
        grid = torch.stack([2 * xs / max(w - 1, 1) - 1, 2 * ys / max(h - 1, 1) - 1], dim=-1)
    else:
        grid = torch.stack([(2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1], dim=-1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection", align_corners=align_corners)


def elastic(x: Tensor, alpha: float, sigma: float, affine: float, generator: torch.Generator) -> Tensor:
    """make_cifar_c's ``elastic_transform``: a random affine warp, then a smooth random displacement field.

    The affine moves three points around the centre (``size // 3`` away) by up to ``affine`` pixels each
    (OpenCV ``warpAffine``, bilinear, reflect-101 borders); the displacement is uniform(-1, 1) noise blurred by
    a Gaussian of ``sigma`` (truncated at 3 sigma, mirrored) times ``alpha`` (scipy ``map_coordinates``).
    """
    n, _, h, w = x.shape
    cx, cy, s = float(w // 2), float(h // 2), float(min(h, w) // 3)
    src = torch.tensor([[cx + s, cy + s], [cx + s, cy - s], [cx - s, cy - s]], dtype=torch.float64)
    dst = src + (torch.rand(n, 3, 2, generator=generator, dtype=torch.float64) * 2 - 1) * affine
    ones = torch.ones(3, 1, dtype=torch.float64)
    forward = torch.linalg.solve(torch.cat([src, ones], dim=1).expand(n, 3, 3), dst).transpose(1, 2)
    full = torch.cat([forward, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64).expand(n, 1, 3)], dim=1)
    inverse = torch.linalg.inv(full).to(x.device)
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten(), torch.ones(h * w, device=x.device)]).double()
    mapped = (inverse @ points).view(n, 3, h, w)
    warped = _sample(x, mapped[:, 1], mapped[:, 0], align_corners=True)
    field = torch.rand(n, 2, h, w, generator=generator, dtype=torch.float64) * 2 - 1
    if sigma > 0:
        field = gaussian_blur(field, sigma, truncate=3.0, mode="reflect")
    field = (field * alpha).to(x.device)
    return _sample(warped, ys + field[:, 1], xs + field[:, 0], align_corners=False)


def frost_texture(n: int, channels: int, h: int, w: int, generator: torch.Generator, like: Tensor) -> Tensor:
    """A synthetic frost layer per image, in [0,1], in place of the ImageNet-C frost photographs.

    Ridged diamond-square noise (bright thin crystal ridges) standardized, scaled to the photographs' crop
    standard deviation around their per-channel mean (bluish white), plus a per-image brightness offset.
    """
    size = 2 ** max(5, math.ceil(math.log2(max(h, w))))
    ridges = 1 - (2 * plasma_fractal(n, size, 1.6, generator, like, crop=(h, w)) - 1).abs()
    ridges = ridges**3
    z = (ridges - ridges.mean(dim=(1, 2), keepdim=True)) / ridges.std(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    mean = torch.tensor(FROST_MEAN if channels == 3 else (sum(FROST_MEAN) / 3,) * channels, dtype=like.dtype)
    offset = (torch.rand(n, 1, 1, 1, generator=generator, dtype=like.dtype) * 2 - 1) * FROST_SPREAD
    layer = mean.view(1, channels, 1, 1) + offset + FROST_STD * z.to(like.dtype).cpu()[:, None]
    return layer.clamp(0, 1).to(like.device)


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode one H x W x C uint8 image as JPEG in memory and decode it back."""
    buffer = io.BytesIO()
    Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(buffer))
    return decoded.reshape(img.shape)


def disk_kernel(radius: float, alias_blur: float, like: Tensor) -> Tensor:
    """ImageNet-C's disk: a normalized pixel disk smoothed by a 3x3 Gaussian, cropped to its support."""
    r = int(math.floor(radius))
    coords = torch.arange(-r - 1, r + 2, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    disk = (xx**2 + yy**2 <= radius**2).double()
    taps = gaussian_taps(alias_blur, 1, disk)
    smoothed = F.conv2d((disk / disk.sum())[None, None], torch.outer(taps, taps)[None, None], padding=1)
    return smoothed[0, 0].to(device=like.device, dtype=like.dtype)


def box_resize_matrix(in_size: int, out_size: int) -> Tensor:
    """Rows of PIL's BOX-filter resampling weights (Pillow's ``precompute_coeffs``), out_size x in_size."""
    scale = in_size / out_size
    support = 0.5 * max(scale, 1.0)
    centers = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale
    pos = torch.arange(in_size, dtype=torch.float64)
    t = (pos[None, :] - centers[:, None] + 0.5) / max(scale, 1.0)
    lo = (centers - support + 0.5).floor().clamp_min(0)
    hi = (centers + support + 0.5).floor()
    inside = (pos[None, :] >= lo[:, None]) & (pos[None, :] < hi[:, None]) & (t > -0.5) & (t <= 0.5)
    weights = inside.double()
    return weights / weights.sum(dim=1, keepdim=True)


def pixelate_matrix(size: int, small: int, like: Tensor) -> Tensor:
    """One axis of pixelate: down to ``small`` then back up to ``size``, as a size x size matrix."""
    matrix = box_resize_matrix(small, size) @ box_resize_matrix(size, small)
    return matrix.to(device=like.device, dtype=like.dtype)
