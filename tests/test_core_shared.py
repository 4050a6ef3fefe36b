"""The shared floor: computed records and their JSON, the one formatter set, the registries."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from nrflab.core.errors import NrflabError
from nrflab.core.fmt import cell, ci, ci_phrase, difference, eps, interval, num, pct, points, spread
from nrflab.core.io import to_json_text
from nrflab.core.records import FLAT, json_key, record, to_json
from nrflab.core.registry import Registry
from nrflab.core.stats import finite_mean


@record
class _Inner:
    a: int
    ci: tuple[float, float]


@record
class _Outer:
    name: str
    inner: _Inner = dataclasses.field(metadata=FLAT)
    is_self: bool = dataclasses.field(default=False, metadata=json_key("self"))
    path: Path = Path("x/y")
    values: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


def test_a_record_is_frozen_and_its_json_keeps_field_order_flat_nests_and_renames() -> None:
    rec = _Outer("n", _Inner(1, (0.25, 0.5)), True, values={"t": torch.tensor([1.0, 2.0])})
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.name = "m"  # type: ignore[misc]
    data = to_json(rec)
    assert list(data) == ["name", "a", "ci", "self", "path", "values"]
    assert data == {"name": "n", "a": 1, "ci": [0.25, 0.5], "self": True, "path": "x/y", "values": {"t": [1.0, 2.0]}}
    assert json.loads(to_json_text(rec)) == data  # the file writer takes records as they are


def test_a_custom_to_dict_wins_where_a_record_is_nested() -> None:
    @dataclasses.dataclass(frozen=True)
    class Custom:
        x: int

        def to_dict(self) -> dict[str, int]:
            return {"renamed": self.x}

    assert to_json([Custom(3)]) == [{"renamed": 3}]


def test_the_formatters_write_each_kind_of_number_one_way() -> None:
    assert pct(0.95) == "95.0 %" and pct(0.95, unit=False) == "95.0" and pct(0.12345, 2) == "12.35 %"
    assert pct(None) == pct(math.nan) == pct(math.inf) == "n/a"
    assert num(0.5) == "0.500" and num(None) == "n/a"
    assert points(0.032) == "+3.2" and points(-0.01) == "-1.0" and points(math.nan) == "n/a"
    assert interval(0.1, 0.2) == "[10.0, 20.0]" and interval(math.nan, 0.2) == "[n/a]"
    assert ci((0.1, 0.2)) == "[10.0, 20.0]" and ci((math.nan, math.nan)) == ""
    assert ci_phrase((0.1, 0.2)) == " (95 % CI [10.0, 20.0])" and ci_phrase((math.nan, 1.0)) == ""
    assert difference(0.05, 0.01, 0.09, percent=True) == "+5.0 points [1.0, 9.0]"
    assert difference(0.5, math.nan, math.nan, percent=False) == "+0.50 [n/a]"
    assert cell([0.5]) == "50.0 %" and cell([0.5, 0.7]).startswith("60.0 % [")
    assert cell([0.1, 0.3], percent=False).startswith("0.200 [")
    assert spread([0.5, None, 0.7], num) == "0.600 (0.500 to 0.700)" and spread([math.nan], num) == "n/a"
    assert eps(8 / 255) == "8/255" and eps(0.25) == "0.25" and eps(1.0) == "1" and eps(0.0) == "0"


def test_finite_mean_drops_what_is_not_a_number() -> None:
    assert finite_mean([1.0, None, math.nan, 3.0]) == 2.0 and math.isnan(finite_mean([]))
    assert finite_mean(torch.tensor([1.0, math.nan, math.inf, 0.0])) == 0.5


def test_a_registry_adds_lists_filters_and_refuses_in_one_line() -> None:
    reg: Registry[int] = Registry("widget")

    @reg.register("pgd-l2", lambda f: 2)
    @reg.register("pgd-linf", lambda f: 1)
    def _made() -> None: ...

    reg.add("fgsm", 3)
    assert reg.names() == ["pgd-linf", "pgd-l2", "fgsm"] and reg.names(filter="pgd-*") == ["pgd-linf", "pgd-l2"]
    assert reg.get("fgsm") == 3 and "fgsm" in reg and len(reg) == 3
    reg.add("fgsm", 3)  # the same entry again: a no-op
    with pytest.raises(NrflabError, match="widget 'fgsm' is already registered"):
        reg.add("fgsm", 4)
    with pytest.raises(NrflabError, match="unknown widget 'cw'; choose one of pgd-linf, pgd-l2, fgsm") as info:
        reg.get("cw")
    assert "\n" not in str(info.value)


def test_every_extension_point_is_a_registry_with_a_list_query() -> None:
    from nrflab.data import list_datasets
    from nrflab.experiments.registry import list_experiments
    from nrflab.models import list_archs, list_norms, list_pretrained

    assert "mnist5k" in list_datasets() and list_datasets(filter="cifar*") == ["cifar10", "cifar100", "cifar100-coarse"]
    assert list_archs(filter="resnet*") == ["resnet18", "resnet50"]
    assert list_norms()[:2] == ["bn", "none"] and list_norms(filter="bn*") == ["bn", "bn-eval"]
    assert list_pretrained() and all(n.count("/") >= 1 for n in list_pretrained())
    assert list_experiments()[0] == "core" and "planted" in list_experiments()


def test_a_new_norm_and_arch_are_one_decorator_each() -> None:
    from torch import nn

    from nrflab.models import ARCHS, NORMS, create_model, register_arch, register_norm

    @register_norm("test-identity", description="identity, for a test")
    def _identity(channels: int) -> nn.Module:
        return nn.Identity()

    @register_arch("test-linear", description="flatten + linear, for a test")
    def _linear(nc: int, ic: int, norm: object, width: float, fixup: bool) -> nn.Module:
        net = nn.Sequential(nn.Flatten(), nn.LazyLinear(nc))
        net.forward_features = lambda x, fake_relu=False: net[0](x)  # type: ignore[attr-defined]
        return net

    try:
        model = create_model("test-linear", "test-identity", 3, 1, init="torch")
        assert model(torch.rand(2, 1, 4, 4)).shape == (2, 3)
    finally:
        ARCHS._entries.pop("test-linear")
        NORMS._entries.pop("test-identity")


def test_the_glossary_gives_each_word_one_meaning() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "glossary.md").read_text(encoding="utf-8")
    words = ["preset", "variant", "scale", "config", "recipe", "run", "job", "claim", "verdict", "protocol", "guard"]
    rows = [line for line in text.splitlines() if line.startswith("| **")]
    assert [row.split("**")[1] for row in rows] == words


def test_planted_variant_is_the_spelling_and_preset_still_loads_with_a_warning() -> None:
    from nrflab.data.planted_spec import dataset_name, spec_from_params

    new = spec_from_params({"variant": "drand", "size": "16", "train": "50", "test": "20"})
    with pytest.warns(FutureWarning, match="'preset=' is now spelled 'variant='"):
        old = spec_from_params({"preset": "drand", "size": "16", "train": "50", "test": "20"})
    assert old == new and new.preset == new.variant == "drand"
    assert dataset_name(new).startswith("planted:variant=drand")
    with pytest.raises(NrflabError, match="variant= only"):
        spec_from_params({"variant": "drand", "preset": "drand"})
