"""Training augmentation, batched on the device: random crops with zero padding and horizontal flips.

The random draws (crop offsets, then flip decisions) come from a CPU generator, so CPU and GPU runs with
the same seed see the same augmentations; the crop itself is one gather over the padded batch, with no
per-sample Python. The draws reach the GPU in one pinned, non-blocking copy, so a training step does not
wait for the GPU; the images never leave their device.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from nrflab.core.accel import to_device_async


def draw_augmentation(
    n: int, gen: torch.Generator, pad: int = 4, flip: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The random choices for ``n`` images: crop offsets (dx, dy) in 0..2*pad and a flip mask."""
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    mask = (torch.rand(n, generator=gen) < 0.5) if flip else None
    return dx, dy, mask


def crop_and_flip(
    x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, mask: torch.Tensor | None, pad: int = 4
) -> torch.Tensor:
    """Crop each padded image at its (dx, dy) and flip where ``mask``: one gather for the whole batch."""
    n, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = dy.to(dev).view(n, 1) + torch.arange(h, device=dev).view(1, h)  # n x h
    cols = dx.to(dev).view(n, 1) + torch.arange(w, device=dev).view(1, w)  # n x w
    if mask is not None:
        # A flip reverses the column order of the crop: fold it into the gather.
        m = mask.to(dev).view(n, 1)
        cols = torch.where(m, cols.flip(1), cols)
    index_n = torch.arange(n, device=dev).view(n, 1, 1, 1)
    index_c = torch.arange(c, device=dev).view(1, c, 1, 1)
    return padded[index_n, index_c, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


def augment_batch(x: torch.Tensor, gen: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop with zero padding and (optionally) horizontal flip, batched on the device."""
    dx, dy, mask = draw_augmentation(x.shape[0], gen, pad, flip)
    draws = torch.stack([dx, dy] if mask is None else [dx, dy, mask.long()])
    (draws,) = to_device_async([draws], x.device)
    return crop_and_flip(x, draws[0], draws[1], None if mask is None else draws[2].bool(), pad)


def augment_batch_reference(x: torch.Tensor, gen: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """The per-sample definition of :func:`augment_batch` (same draws): the tests' reference."""
    n, _, h, w = x.shape
    dx, dy, mask = draw_augmentation(n, gen, pad, flip)
    padded = F.pad(x, (pad, pad, pad, pad))
    out = torch.stack([padded[i, :, int(dy[i]) : int(dy[i]) + h, int(dx[i]) : int(dx[i]) + w] for i in range(n)])
    if mask is not None:
        out = torch.where(mask.to(x.device).view(-1, 1, 1, 1), out.flip(3), out)
    return out


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
