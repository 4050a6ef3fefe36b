"""Lives here: where images come from -- the dataset registry (`load_dataset`, `list_datasets`), embedded sets, on-disk formats (`formats/`), downloads, built feature sets, the planted family, per-dataset training defaults.
Never here: models, attacks or measurements (a bundle only carries data; the trainer attaches probes).
To add one: a loader decorated ``@register_dataset("name")`` in one module (a file format goes in ``formats/``).

Datasets: one registry, ``load_dataset(name, root=None)``, images in [0,1]."""

from nrflab.data import built as _built  # noqa: F401  (registers directories written by `nrflab build-dataset`)
from nrflab.data import embedded as _embedded  # noqa: F401  (registers mnist5k, digits)
from nrflab.data import formats as _formats  # noqa: F401  (registers CIFAR, SVHN, IDX, image folders)
from nrflab.data import planted as _planted  # noqa: F401  (registers planted: known robust and non-robust features)
from nrflab.data.base import (
    DatasetBundle,
    ImageTensorDataset,
    Probe,
    limit_dataset,
    list_datasets,
    load_dataset,
    register_dataset,
)

__all__ = [
    "DatasetBundle",
    "ImageTensorDataset",
    "limit_dataset",
    "list_datasets",
    "load_dataset",
    "Probe",
    "check_dataset_loads",
    "register_dataset",
]


def check_dataset_loads(name: str, root: str | None, checked: set[tuple[str, str | None]] | None = None) -> None:
    """The dataset loads: its name, parameters and files are checked (once per distinct ``(name, root)`` when
    ``checked`` is given), so a chain of runs fails in one line before the first run starts."""
    if checked is not None and (name, root) in checked:
        return
    load_dataset(name, root=root)
    if checked is not None:
        checked.add((name, root))
