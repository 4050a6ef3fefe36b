"""Tests for the embedded datasets (mnist5k, digits) and dataset-name errors."""

from __future__ import annotations

import re

import pytest
import torch

from nrflab.core.errors import NrflabError
from nrflab.data import ImageTensorDataset, load_dataset
from nrflab.data import list_datasets as available_datasets


def test_mnist5k_split(mnist5k) -> None:
    assert (len(mnist5k.train), len(mnist5k.test)) == (4000, 1000)
    assert mnist5k.input_shape == (1, 28, 28) and mnist5k.in_channels == 1 and mnist5k.num_classes == 10
    assert torch.equal(torch.bincount(mnist5k.train.labels, minlength=10), torch.full((10,), 400))
    assert torch.equal(torch.bincount(mnist5k.test.labels, minlength=10), torch.full((10,), 100))
    for part in (mnist5k.train, mnist5k.test):
        x, y = part.tensors()
        assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    # Real digits: mostly black background, some ink.
    x, _ = mnist5k.test.tensors()
    assert 0.08 < float(x.mean()) < 0.2
    image, label = mnist5k.test[0]
    assert image.shape == (1, 28, 28) and isinstance(label, int)
    assert mnist5k.mean == (0.1307,) and mnist5k.std == (0.3081,)


def test_mnist5k_split_is_fixed_and_disjoint(mnist5k) -> None:
    again = load_dataset("mnist5k")
    assert torch.equal(again.train.images, mnist5k.train.images)
    assert torch.equal(again.test.labels, mnist5k.test.labels)
    flat = lambda d: {bytes(img.numpy().tobytes()) for img in d.images}  # noqa: E731
    assert len(flat(mnist5k.train) & flat(mnist5k.test)) < 5  # no image in both parts (bar exact duplicates)


def test_digits() -> None:
    digits = load_dataset("digits")
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert len(digits.train) + len(digits.test) == 1797 and len(digits.test) == 350
    x, y = digits.train.tensors()
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and x.shape[1:] == (1, 8, 8)
    assert set(y.tolist()) == set(range(10))
    assert torch.equal(load_dataset("DIGITS").test.labels, digits.test.labels)


def test_unknown_dataset_lists_the_choices() -> None:
    with pytest.raises(NrflabError, match="unknown dataset 'mnist6k'; choose one of") as info:
        load_dataset("mnist6k")
    message = str(info.value)
    assert "mnist6k" in message and "\n" not in message
    assert {"mnist5k", "digits"} <= set(available_datasets())
    assert all(name in message for name in available_datasets())


def test_image_tensor_dataset_checks_shapes() -> None:
    with pytest.raises(NrflabError, match=re.escape("images must have shape (N, C, H, W), got (4, 28, 28)")):
        ImageTensorDataset(torch.zeros(4, 28, 28), torch.zeros(4))
    with pytest.raises(NrflabError, match="4 images but 3 labels"):
        ImageTensorDataset(torch.zeros(4, 1, 28, 28), torch.zeros(3))
    data = ImageTensorDataset(torch.full((3, 1, 2, 2), 255, dtype=torch.uint8), torch.arange(3))
    assert torch.equal(data.tensors()[0], torch.ones(3, 1, 2, 2))
    assert len(data.subset([0, 2])) == 2 and data.subset([2]).labels.tolist() == [2]
