"""Datasets: one registry, ``load_dataset(name, root=None)``, images in [0,1]."""

from . import built as _built  # noqa: F401  (registers directories written by `nrflab build-dataset`)
from . import embedded as _embedded  # noqa: F401  (registers mnist5k, digits)
from . import files as _files  # noqa: F401  (registers CIFAR, SVHN, IDX, image folders)
from . import planted as _planted  # noqa: F401  (registers planted: known robust and non-robust features)
from .base import (
    DatasetBundle,
    ImageTensorDataset,
    Probe,
    available_datasets,
    channel_stats,
    iterate_batches,
    limit_dataset,
    load_dataset,
    parse_dataset_name,
    register_dataset,
    subset_indices,
)

__all__ = [
    "DatasetBundle",
    "ImageTensorDataset",
    "available_datasets",
    "channel_stats",
    "iterate_batches",
    "limit_dataset",
    "load_dataset",
    "parse_dataset_name",
    "Probe",
    "register_dataset",
    "subset_indices",
]
