"""Shared pieces of the bring-your-own-model tests: a small BN model trained on the 8x8 ``digits`` data
(once per test process), a gradient-masked wrapper of it, and state-dict layout writers."""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn
from torch.nn import functional as F

from nrflab.data import DatasetBundle, load_dataset
from nrflab.models import NrfModel, create_model


@functools.lru_cache(maxsize=1)
def digits() -> DatasetBundle:
    """sklearn's 8x8 digits (1,437 train / 360 test images, 10 classes, 1 channel)."""
    return load_dataset("digits")


@functools.lru_cache(maxsize=1)
def _trained_digits_master() -> NrfModel:
    bundle = digits()
    model = create_model("smallcnn", "bn", 10, 1, width=0.25, mean=bundle.mean, std=bundle.std, seed=0)
    x, y = bundle.train.tensors()
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for _ in range(150):
        idx = torch.randint(0, x.shape[0], (64,), generator=gen)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


def trained_digits_model() -> NrfModel:
    """A private copy of a smallcnn (width 1/4, BN) trained for 150 SGD steps on digits: ~95 % test accuracy."""
    return copy.deepcopy(_trained_digits_master())


class RoundedLogits(nn.Module):
    """A deliberately gradient-masked model: the logits are rounded (a non-differentiable step), so every
    input gradient is exactly zero while the predictions stay those of ``net``."""

    def __init__(self, net: nn.Module, resolution: float = 0.5):
        super().__init__()
        self.net = net
        self.resolution = resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(self.net(x) / self.resolution) * self.resolution


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine (so layout and folding tests mean something)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
    return model.eval()


def net_state(model: NrfModel) -> dict[str, torch.Tensor]:
    """The network's tensors without nrflab's ``net.`` prefix and without the normalization buffers."""
    return {k[len("net.") :]: v.clone() for k, v in model.state_dict().items() if k.startswith("net.")}


def torchvision_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CIFAR ResNet state dict renamed the torchvision way (``fc``, ``downsample``)."""
    out = {}
    for key, value in state.items():
        key = key.replace(".shortcut.", ".downsample.")
        out["fc." + key[len("linear.") :] if key.startswith("linear.") else key] = value
    return out


def robustness_checkpoint(model: NrfModel) -> dict:
    """The Madry-lab ``robustness`` library's checkpoint layout for ``model`` (DataParallel-wrapped AttackerModel)."""
    mean = model.normalize.mean.reshape(-1, 1, 1).clone()
    std = model.normalize.std.reshape(-1, 1, 1).clone()
    inner = net_state(model)
    sd = {
        "module.normalizer.new_mean": mean,
        "module.normalizer.new_std": std,
        "module.attacker.normalize.new_mean": mean.clone(),
        "module.attacker.normalize.new_std": std.clone(),
    }
    sd.update({f"module.model.{k}": v for k, v in inner.items()})
    sd.update({f"module.attacker.model.{k}": v.clone() for k, v in inner.items()})
    return {"model": sd, "epoch": 7, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}, "schedule": None}
