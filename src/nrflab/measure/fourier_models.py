"""``nrflab fourier`` in Python: the Fourier heat maps (:mod:`nrflab.measure.fourier`) of models named by
reference (run directories, weights, ``pretrained:NAME``, ...) on one dataset's seeded test subset.

Every input is checked and every model loaded and fitted to the dataset before the first map is measured, so a
bad reference fails at once, not after an hour of heat maps.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Optional, cast

from nrflab.core.errors import NrflabError
from nrflab.core.validation import resolve_device
from nrflab.data import limit_dataset, load_dataset
from nrflab.measure.fourier import PRECISIONS, FourierHeatMap, Precision, fourier_heat_map
from nrflab.measure.metrics import dataset_tensors
from nrflab.models.inspection import check_model_fits, model_slug
from nrflab.models.references import load_model_reference


def _check(eps: float, limit: int, precision: str) -> None:
    for bad, text in (
        (not (eps > 0 and math.isfinite(eps)), f"--eps must be > 0 and finite, got {eps}"),
        (limit < 1, f"--limit must be >= 1, got {limit}"),
        (precision not in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"),
    ):
        if bad:
            raise NrflabError(text)


def heat_maps_of(
    references: Sequence[str],
    *,
    dataset: str,
    eps: float = 4.0,
    limit: int = 1000,
    seed: int = 0,
    per_channel: bool = False,
    precision: str = "float32",
    batch_size: int = 512,
    stride: int = 1,
    freeze: bool = False,
    data_root: Optional[Path] = None,
    download: bool = False,
    device: str = "auto",
    progress: bool = False,
) -> Iterator[tuple[str, FourierHeatMap]]:
    """The Fourier heat map of each model ``references`` names, in order, as ``(slug, heat map)``: on the seeded
    ``limit`` test images of ``dataset``, perturbations of L2 norm ``eps`` (see
    :func:`~nrflab.measure.fourier.fourier_heat_map` for the other arguments). The slug names the model's
    files (numbered when there are several); write them with ``nrflab.report.fourier_plots.write_heat_maps``.
    With ``progress``, a line per model (``fourier: NAME on N images of DATASET``) and a progress bar go to
    stderr. Everything is checked and loaded when the first map is asked for, before it is measured."""
    _check(eps, limit, precision)
    dev = resolve_device(device)
    loaded = [load_model_reference(m, device=dev) for m in references]
    bundle = load_dataset(dataset, root=data_root, download=download)
    for model in loaded:
        check_model_fits(model, num_classes=bundle.num_classes, input_shape=bundle.input_shape, dataset=bundle.name)
    x, y = dataset_tensors(limit_dataset(bundle.test, limit, seed))
    slugs = [f"{i + 1}-{model_slug(m)}" if len(loaded) > 1 else model_slug(m) for i, m in enumerate(loaded)]
    for model, slug in zip(loaded, slugs):
        if progress:
            print(f"fourier: {model.name} on {len(y)} images of {bundle.name}", file=sys.stderr)
        yield (
            slug,
            fourier_heat_map(
                model.module,
                x,
                y,
                eps=eps,
                name=model.name,
                per_channel=per_channel,
                seed=seed,
                batch_size=batch_size,
                precision=cast(Precision, precision),
                freeze=freeze,
                stride=stride,
                progress=progress,
            ),
        )


__all__ = ["heat_maps_of"]
