"""Tests for the pretrained registry: the one real offline model (AutoAttack's CIFAR-10 ResNet-18 in the
pyautoattack wheel) is registered, verified by sha256 and gives the reference implementation's logits;
unpinned entries never download unverified; local weights directories work; no network is used."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

from _byom_helpers import net_state
from nrflab.core.errors import NrflabError
from nrflab.models import create_model
from nrflab.models import pretrained as P
from nrflab.models.inspection import check_model_fits
from nrflab.models.references import load_model_reference

NAME = "pyautoattack/cifar10/resnet18"


@pytest.fixture(scope="module")
def examples() -> Path:
    spec = importlib.util.find_spec("pyautoattack")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pyautoattack is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "examples"
    if not (path / "model_test.pt").is_file():
        pytest.skip("pyautoattack ships no examples/model_test.pt")
    return path


@pytest.fixture(scope="module")
def loaded(examples):
    return P.load_pretrained(NAME)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a URL fails the test: nothing here may use the network."""
    import urllib.request

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_the_offline_model_is_registered_with_provenance(examples) -> None:
    entry = P.get_pretrained(NAME)
    assert entry in P.available_pretrained() and P.is_pretrained_name(NAME)
    assert entry.verified and len(entry.sha256) == 64
    assert entry.arch == "resnet18" and entry.dataset == "cifar10" and entry.mean is None
    assert "MIT" in entry.licence and "pyautoattack" in entry.source
    assert P.package_weights(entry) == examples / "model_test.pt"
    assert P.verify_sha256(examples / "model_test.pt", entry.sha256) == entry.sha256


def test_it_loads_and_matches_the_reference_implementation(loaded, examples) -> None:
    assert loaded.kind == "pretrained" and loaded.sha256 == P.get_pretrained(NAME).sha256
    assert (loaded.num_classes, loaded.input_shape, loaded.has_batchnorm) == (10, (3, 32, 32), True)
    assert not loaded.normalization.inside and loaded.notes == ()
    spec = importlib.util.spec_from_file_location("pyautoattack_resnet_reference", examples / "resnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reference = module.ResNet18().eval()
    reference.load_state_dict(torch.load(examples / "model_test.pt", map_location="cpu", weights_only=True))
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = loaded.module(x), reference(x)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert float(theirs.std()) > 0.1  # real logits, not a degenerate model
    check_model_fits(loaded, num_classes=10, input_shape=(3, 32, 32), dataset="cifar10")
    with pytest.raises(NrflabError, match=r"does not fit dataset 'mnist'"):
        check_model_fits(loaded, num_classes=10, input_shape=(1, 28, 28), dataset="mnist")


def test_a_bare_registered_name_and_pretrained_prefix_are_model_references(loaded) -> None:
    assert load_model_reference(NAME).fingerprint == loaded.fingerprint
    assert load_model_reference(f"pretrained:{NAME}").fingerprint == loaded.fingerprint


def test_a_tampered_file_is_refused(examples, tmp_path, monkeypatch) -> None:
    entry = dataclasses.replace(
        P.get_pretrained(NAME), name="test/tampered", package_file=None, filename="tampered/model_test.pt"
    )
    monkeypatch.setitem(P.PRETRAINED._entries, entry.name, entry)
    target = tmp_path / entry.filename
    target.parent.mkdir(parents=True)
    shutil.copyfile(examples / "model_test.pt", target)
    with open(target, "r+b") as fh:  # flip one byte near the end (inside a weight tensor)
        fh.seek(-4096, 2)
        byte = fh.read(1)
        fh.seek(-4096, 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(NrflabError, match=r"has sha256 .* the registry pins 399f52da9f914c32"):
        P.load_pretrained(entry.name, weights_dir=tmp_path)


def _small_rb_entry(**changes) -> P.PretrainedEntry:
    base = P.get_pretrained("robustbench/cifar10/L2/Sehwag2021Proxy_R18")
    return dataclasses.replace(base, name="test/rb-small", width=0.0625, filename="cifar10/L2/test_small.pt", **changes)


def test_unpinned_entries_are_never_downloaded_unverified(tmp_path, monkeypatch) -> None:
    entry = _small_rb_entry()
    monkeypatch.setitem(P.PRETRAINED._entries, entry.name, entry)
    monkeypatch.delenv(P.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(P, "DEFAULT_WEIGHTS_DIR", tmp_path / "home_weights")
    with pytest.raises(NrflabError, match="no pinned sha256, so nrflab will not download it unverified"):
        P.load_pretrained(entry.name, weights_dir=tmp_path / "empty")
    with pytest.raises(NrflabError, match="not found in"):
        P.load_pretrained(entry.name, weights_dir=tmp_path / "empty", download=False)


def test_a_local_copy_of_an_unpinned_entry_loads_with_a_note(tmp_path, monkeypatch) -> None:
    entry = _small_rb_entry(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    monkeypatch.setitem(P.PRETRAINED._entries, entry.name, entry)
    original = create_model("resnet18", "bn", 10, 3, width=0.0625, mean=entry.mean, std=entry.std, seed=3)
    target = tmp_path / "weights" / entry.filename
    target.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net_state(original).items()}}, target)  # RobustBench-style
    monkeypatch.setenv(P.WEIGHTS_ENV, str(tmp_path / "weights"))
    loaded = P.load_pretrained(entry.name)
    assert loaded.source == str(target)
    assert any(n.startswith("unverified") and loaded.sha256 in n for n in loaded.notes)
    assert loaded.normalization.origin == "registry" and loaded.normalization.mean == entry.mean
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), original.eval()(x))


def test_an_entry_nrflab_cannot_build_is_refused_with_advice() -> None:
    with pytest.raises(NrflabError, match="WideResNet-28-10, which nrflab cannot build; load it with a factory"):
        P.load_pretrained("robustbench/cifar10/standard/Standard")


def test_every_entry_is_complete_and_listed(tmp_path) -> None:
    lines = "\n".join(P.format_pretrained_table(weights_dir=tmp_path))
    for e in P.available_pretrained():
        assert e.name in lines and e.source and e.licence and e.dataset and e.architecture and e.filename
        assert e.url or e.package_file
        assert e.reported_clean_acc is None or 0.0 < e.reported_clean_acc <= 1.0
        if e.name.startswith("robustbench/"):
            assert not e.verified and "unverified" in lines and e.url.startswith("https://")
    with pytest.raises(NrflabError, match="unknown pretrained model 'nope'; registered: pyautoattack/cifar10/resnet18"):
        P.get_pretrained("nope")
