"""Shared fixtures: one thread, a deterministic hypothesis profile, mnist5k and a tiny trained model."""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, settings
from torch.nn import functional as F

from nrflab.data import DatasetBundle, load_dataset
from nrflab.models import NrfModel, create_model

torch.set_num_threads(1)

settings.register_profile(
    "nrflab",
    deadline=None,
    max_examples=20,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
settings.load_profile("nrflab")

TRAIN_STEPS = 300
TRAIN_BATCH = 64


@pytest.fixture(scope="session")
def mnist5k() -> DatasetBundle:
    """The embedded 4,000/1,000 MNIST subset (parsed once per session)."""
    return load_dataset("mnist5k")


def train_tiny(bundle: DatasetBundle, steps: int = TRAIN_STEPS, seed: int = 0) -> NrfModel:
    """A smallcnn (width 0.25, BN) trained with SGD for ``steps`` batches of mnist5k: ~97 % test accuracy."""
    model = create_model(
        "smallcnn",
        "bn",
        bundle.num_classes,
        bundle.in_channels,
        width=0.25,
        mean=bundle.mean,
        std=bundle.std,
        input_shape=bundle.input_shape,
        seed=seed,
    )
    x, y = bundle.train.tensors()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (TRAIN_BATCH,), generator=gen)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
        sched.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="session")
def _trained_master(mnist5k: DatasetBundle) -> NrfModel:
    return train_tiny(mnist5k)


@pytest.fixture()
def trained_model(_trained_master: NrfModel) -> NrfModel:
    """A private copy of the session's tiny trained smallcnn (eval mode), so no test can leak into another."""
    return copy.deepcopy(_trained_master)


@pytest.fixture(scope="session")
def test_batch(mnist5k: DatasetBundle) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 256 mnist5k test images (float in [0,1]) and labels."""
    x, y = mnist5k.test.tensors()
    return x[:256].clone(), y[:256].clone()


def tiny_model(
    norm: str = "bn",
    arch: str = "smallcnn",
    in_channels: int = 1,
    num_classes: int = 10,
    seed: int = 0,
    width: float | None = None,
) -> NrfModel:
    """An untrained tiny model for 8x8 inputs (resnet18 at width 1/16 for fixup)."""
    if width is None:
        width = 0.0625 if arch.startswith("resnet") else 0.125
    return create_model(arch, norm, num_classes, in_channels, width=width, mean=(0.5,), std=(0.25,), seed=seed)


def state_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A deep copy of every parameter and buffer (BN running stats, num_batches_tracked included)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert set(after) == set(before)
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} changed"


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def capture_log() -> Iterator[list[str]]:
    """The messages nrflab logs inside the block (its ``nrflab`` logger at INFO)."""
    logger = logging.getLogger("nrflab")
    handler = _ListHandler()
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


@pytest.fixture()
def logged() -> Iterator[list[str]]:
    """The messages nrflab logs during a test."""
    with capture_log() as messages:
        yield messages
