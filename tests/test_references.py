"""Tests for nrflab.models.references: every kind of model reference loads to the same function as the
model it came from, common state-dict layouts map onto nrflab's archs, misfits and unsafe pickles are one
clean line, and nothing executes code except a factory the user names."""

from __future__ import annotations

import pickle
import textwrap

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save_file
from torch import nn

from _byom_helpers import net_state, randomize_bn, robustness_checkpoint, torchvision_names
from nrflab.core.errors import NrflabError
from nrflab.models import create_model
from nrflab.models.checkpoint import save_model
from nrflab.models.inspection import InputNormalized, LoadedModel, check_model_fits
from nrflab.models.references import load_model_reference, parse_model_reference

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def tiny_resnet(mean=None, std=None, seed: int = 0):
    """A ResNet-18 at width 1/16 (4..32 channels) with non-trivial BN statistics; takes 16x16 RGB images."""
    return randomize_bn(create_model("resnet18", "bn", 10, 3, width=0.0625, mean=mean, std=std, seed=seed), seed)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


# ---------------------------------------------------------------------------------------------
# State-dict layouts


def test_torchvision_layout_resnet_state_dict_loads(tmp_path, images) -> None:
    original = tiny_resnet()
    path = tmp_path / "tv_resnet18.pth"
    torch.save(torchvision_names(net_state(original)), path)
    loaded = load_model_reference(path)
    assert isinstance(loaded, LoadedModel) and loaded.kind == "state-dict"
    assert (loaded.arch, loaded.norm, loaded.width, loaded.num_classes, loaded.in_channels) == (
        "resnet18",
        "bn",
        0.0625,
        10,
        3,
    )
    assert "torchvision" in loaded.layout and any("max-pool" in n for n in loaded.notes)
    assert loaded.has_batchnorm and not loaded.normalization.inside
    torch.testing.assert_close(logits(loaded.module, images), logits(original, images))


def test_imagenet_stem_resnet_is_refused_naming_the_key(tmp_path) -> None:
    state = torchvision_names(net_state(tiny_resnet()))
    state["conv1.weight"] = torch.zeros(4, 3, 7, 7)
    path = tmp_path / "imagenet_stem.pth"
    torch.save(state, path)
    with pytest.raises(NrflabError, match=r"does not map onto nrflab resnet18.*conv1\.weight.*7x7") as info:
        load_model_reference(path)
    one_line(info)


def test_robustness_library_checkpoint_uses_its_normalizer(tmp_path, images) -> None:
    original = tiny_resnet(CIFAR_MEAN, CIFAR_STD)
    path = tmp_path / "robustness_checkpoint.pt"
    torch.save(robustness_checkpoint(original), path)
    loaded = load_model_reference(path)
    assert "robustness library" in loaded.layout and "'module.' prefix" in loaded.layout
    assert loaded.normalization.origin == "checkpoint"
    assert loaded.normalization.mean == pytest.approx(CIFAR_MEAN) and loaded.normalization.std == pytest.approx(
        CIFAR_STD
    )
    torch.testing.assert_close(logits(loaded.module, images), logits(original, images))


@pytest.mark.parametrize(
    "prefix, container",
    [("module.", None), ("model.", "state_dict"), ("module.model.", "model_state_dict"), ("_orig_mod.", "net")],
)
def test_prefixed_and_wrapped_state_dicts_load(prefix, container, tmp_path, images) -> None:
    original = tiny_resnet()
    state = {prefix + k: v for k, v in net_state(original).items()}
    path = tmp_path / "prefixed.pt"
    torch.save({container: state, "epoch": 3} if container else state, path)
    loaded = load_model_reference(path)
    torch.testing.assert_close(logits(loaded.module, images), logits(original, images))


def test_robustbench_mu_sigma_buffers_become_the_normalization(tmp_path, images) -> None:
    original = tiny_resnet(CIFAR_MEAN, CIFAR_STD)
    state = net_state(original)
    state["mu"], state["sigma"] = original.normalize.mean.clone(), original.normalize.std.clone()
    path = tmp_path / "rb.pt"
    torch.save({"state_dict": state}, path)
    loaded = load_model_reference(path)
    assert loaded.normalization.origin == "checkpoint"
    torch.testing.assert_close(logits(loaded.module, images), logits(original, images))


def test_plain_safetensors_state_dict_and_nrflab_layout_load_with_the_same_fingerprint(tmp_path, images) -> None:
    original = tiny_resnet()
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in net_state(original).items()}, str(plain))
    full = tmp_path / "full_state.pt"
    torch.save(original.state_dict(), full)  # nrflab layout: normalize.* + net.*, no config
    a, b = load_model_reference(plain), load_model_reference(full)
    assert a.kind == b.kind == "state-dict" and b.layout.startswith("nrflab")
    assert a.fingerprint == b.fingerprint
    assert a.sha256 != b.sha256  # different files, same weights
    torch.testing.assert_close(logits(a.module, images), logits(original, images))


def test_fingerprint_changes_with_any_bn_statistic(tmp_path) -> None:
    original = tiny_resnet()
    first = load_model_reference(original).fingerprint
    with torch.no_grad():
        original.net.bn1.running_var[0] += 1e-3
    assert load_model_reference(original).fingerprint != first


def test_nrflab_checkpoint_and_run_directory_still_load(tmp_path, images) -> None:
    original = tiny_resnet(CIFAR_MEAN, CIFAR_STD)
    path = save_model(original, tmp_path / "run" / "model.safetensors")
    for ref in (path, tmp_path / "run"):
        loaded = load_model_reference(ref)
        assert loaded.kind == "nrflab" and loaded.normalization.origin == "nrflab" and loaded.arch == "resnet18"
        torch.testing.assert_close(logits(loaded.module, images), logits(original, images))
    with pytest.raises(NrflabError, match=r"nrflab checkpoint with its own config; drop --arch 'vgg11'") as info:
        load_model_reference(path, arch="vgg11")
    one_line(info)
    with pytest.raises(NrflabError, match="normalizes its inputs itself") as info:
        load_model_reference(path, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    one_line(info)


def test_group_norm_state_dict_needs_the_norm_named(tmp_path, images) -> None:
    original = create_model("smallcnn", "gn", 10, 3, width=0.125, seed=0)
    path = tmp_path / "gn.pt"
    torch.save(net_state(original), path)
    with pytest.raises(NrflabError, match=r"say which with --norm gn\|ln\|in") as info:
        load_model_reference(path)
    one_line(info)
    loaded = load_model_reference(path, norm="gn")
    assert loaded.arch == "smallcnn" and not loaded.has_batchnorm
    x = images[:, :, :8, :8]
    torch.testing.assert_close(logits(loaded.module, x), logits(original, x))


def test_user_normalization_clashing_with_the_checkpoints_is_refused(tmp_path) -> None:
    path = tmp_path / "robustness.pt"
    torch.save(robustness_checkpoint(tiny_resnet(CIFAR_MEAN, CIFAR_STD)), path)
    with pytest.raises(NrflabError, match="would normalize twice") as info:
        load_model_reference(path, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    one_line(info)


WRAPPERS = ["module.", "model.", "_orig_mod."]


@given(st.lists(st.sampled_from(WRAPPERS), max_size=2), st.sampled_from([None, "state_dict", "model", "net"]))
def test_any_wrapping_of_a_state_dict_loads_to_the_same_weights(prefixes, container) -> None:
    original = create_model("smallcnn", "bn", 10, 1, width=0.125, seed=0)
    state = net_state(original)
    for prefix in prefixes:
        state = {prefix + k: v for k, v in state.items()}
    obj = {container: state} if container else state
    from nrflab.models.references import state_dict_to_model, weights_fingerprint

    model, _ = state_dict_to_model(obj)
    assert weights_fingerprint(model) == weights_fingerprint(original)


# ---------------------------------------------------------------------------------------------
# TorchScript, factories, in-memory modules


def test_torchscript_file_loads(tmp_path, images) -> None:
    original = tiny_resnet()
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.trace(original, images), str(path))
    loaded = load_model_reference(path)
    assert loaded.kind == "torchscript" and loaded.has_batchnorm and loaded.in_channels == 3
    torch.testing.assert_close(logits(loaded.module, images), logits(original, images))
    check_model_fits(loaded, num_classes=10, input_shape=(3, 16, 16), dataset="tiny")
    with pytest.raises(NrflabError, match="brings its own architecture") as info:
        load_model_reference(path, arch="resnet18")
    one_line(info)


FACTORY_CODE = textwrap.dedent("""
    import torch
    from torch import nn

    CALLS = []

    def build():
        CALLS.append(1)
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))

    def not_a_model():
        return 42

    def broken():
        raise RuntimeError("the user's code failed")
""")


def test_factory_file_runs_the_named_function_and_wraps_the_normalization(tmp_path) -> None:
    path = tmp_path / "my_models.py"
    path.write_text(FACTORY_CODE)
    loaded = load_model_reference(f"{path}:build")
    assert loaded.kind == "factory" and loaded.sha256 is None and loaded.in_channels == 1
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    namespace: dict = {}
    exec(compile(FACTORY_CODE, str(path), "exec"), namespace)  # the same code, run here as reference
    reference = namespace["build"]().eval()
    torch.testing.assert_close(logits(loaded.module, x), logits(reference, x))

    wrapped = load_model_reference(f"{path}:build", mean=(0.5,), std=(0.25,))
    assert isinstance(wrapped.module, InputNormalized) and wrapped.normalization.origin == "user"
    torch.testing.assert_close(logits(wrapped.module, x), logits(reference, (x - 0.5) / 0.25))
    check_model_fits(wrapped, num_classes=10, input_shape=(1, 8, 8), dataset="digits")


@pytest.mark.parametrize(
    "function, message",
    [
        ("not_a_model", "returned a int, not a torch.nn.Module"),
        ("broken", "raised RuntimeError: the user's code failed"),
        ("missing", r"no function 'missing' in .*my_models.py; functions there: build, not_a_model, broken"),
    ],
)
def test_bad_factories_are_one_line(function, message, tmp_path) -> None:
    path = tmp_path / "my_models.py"
    path.write_text(FACTORY_CODE)
    with pytest.raises(NrflabError, match=message) as info:
        load_model_reference(f"{path}:{function}")
    one_line(info)


def test_package_module_factory_loads(tmp_path, monkeypatch) -> None:
    package = tmp_path / "byom_pkg_for_tests"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "zoo.py").write_text(FACTORY_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_model_reference("byom_pkg_for_tests.zoo:build")
    assert loaded.kind == "factory" and loaded.source == "byom_pkg_for_tests.zoo:build"
    import byom_pkg_for_tests.zoo as zoo

    assert zoo.CALLS == [1]
    with pytest.raises(NrflabError, match=r"factory module no_such_pkg_xyz.mod cannot be imported") as info:
        load_model_reference("no_such_pkg_xyz.mod:build")
    one_line(info)


def test_in_memory_module_is_used_as_is(images) -> None:
    model = tiny_resnet().train()
    loaded = load_model_reference(model)
    assert loaded.module is model and model.training  # not copied, mode untouched
    assert loaded.num_classes == 10 and loaded.kind == "module"


# ---------------------------------------------------------------------------------------------
# Misfits and unsafe files


def test_class_and_shape_misfits_are_refused_before_any_attack(tmp_path) -> None:
    loaded = load_model_reference(tiny_resnet())
    with pytest.raises(NrflabError, match=r"\(10 classes\) does not fit dataset 'five' \(5 classes") as info:
        check_model_fits(loaded, num_classes=5, input_shape=(3, 16, 16), dataset="five")
    one_line(info)
    with pytest.raises(NrflabError, match=r"\(3 input channels\) does not fit dataset 'gray'") as info:
        check_model_fits(loaded, num_classes=10, input_shape=(1, 16, 16), dataset="gray")
    one_line(info)
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))  # fixed input size
    with pytest.raises(NrflabError, match=r"does not fit dataset 'small'.*a forward pass fails \(RuntimeError") as info:
        check_model_fits(load_model_reference(flat), num_classes=10, input_shape=(3, 8, 8), dataset="small")
    one_line(info)
    check_model_fits(load_model_reference(flat), num_classes=10, input_shape=(3, 16, 16), dataset="fits")


class _Payload:
    """Unpickling this would create a file: the code a malicious checkpoint would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_pickle_that_would_execute_code_is_refused_and_not_executed(writer, tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if writer == "pickle":
        path.write_bytes(pickle.dumps({"conv1.weight": _Payload(marker)}, protocol=2))
    else:
        torch.save({"state_dict": _Payload(marker)}, path)
    with pytest.raises(NrflabError, match="is a pickle that needs code to load") as info:
        load_model_reference(path)
    one_line(info)
    assert not marker.exists()


def test_a_whole_model_saved_with_torch_save_is_refused(tmp_path) -> None:
    path = tmp_path / "whole_model.pth"
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), path)
    with pytest.raises(NrflabError, match=r"needs code to load.*torch\.save\(model\)") as info:
        load_model_reference(path)
    one_line(info)


@pytest.mark.parametrize(
    "text, message",
    [
        ("does/not/exist.pt", "no such file or directory, not a registered pretrained name"),
        ("", "empty model reference"),
        ("pretrained:", "pretrained: needs a name"),
        ("pretrained:no-such-model", "unknown pretrained model 'no-such-model'"),
        ("missing_file.py:build", "factory file not found: missing_file.py"),
    ],
)
def test_bad_references_are_one_line(text, message) -> None:
    with pytest.raises(NrflabError, match=message) as info:
        load_model_reference(text)
    one_line(info)


def test_parsing_classifies_without_loading(tmp_path) -> None:
    f = tmp_path / "f.py"
    f.write_text("")
    assert parse_model_reference(f"{f}:build").kind == "factory-file"
    assert parse_model_reference("pkg.sub.mod:make_model").kind == "factory-module"
    assert parse_model_reference("pyautoattack/cifar10/resnet18").kind == "pretrained"
    assert parse_model_reference(str(tmp_path)).kind == "path"
    with pytest.raises(NrflabError, match="name the function that builds the model"):
        parse_model_reference(str(f))


def test_mean_without_std_and_bad_std_are_one_line() -> None:
    model = tiny_resnet()
    with pytest.raises(NrflabError, match="give both --mean and --std"):
        load_model_reference(model, mean=(0.5, 0.5, 0.5))
    with pytest.raises(NrflabError, match="finite and > 0"):
        load_model_reference(model, mean=(0.5,), std=(0.0,))
    with pytest.raises(NrflabError, match="same number of values"):
        load_model_reference(model, mean=(0.5, 0.5), std=(0.2,))


# ---------------------------------------------------------------------------------------------
# Bring your own: a class or factory plus a state dict, factory arguments, neighbours, one fingerprint

LAYERS_CODE = textwrap.dedent("""
    from torch import nn

    def block(c_in, c_out):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())
""")

OWN_NET_CODE = textwrap.dedent("""
    import torch
    from torch import nn
    from byom_layers_for_tests import block  # a module beside this file

    class Net(nn.Module):
        def __init__(self, num_classes=10, width=4):
            super().__init__()
            self.body = block(1, width)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(width, num_classes)

        def forward(self, x):
            return self.fc(self.pool(self.body(x)).flatten(1))

    def make(width=4, weights=None):
        net = Net(width=width)
        if weights is not None:
            net.load_state_dict(torch.load(weights, weights_only=True))
        return net

    def build():
        return make()
""")


@pytest.fixture()
def own_net(tmp_path):
    """A user's model file (importing a neighbour), one trained-looking instance of its class at width 6,
    and that instance's weights as a wrapped state dict, a plain state dict and a TorchScript archive."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "byom_layers_for_tests.py").write_text(LAYERS_CODE)
    (folder / "own_net.py").write_text(OWN_NET_CODE)
    namespace: dict = {"__name__": "own_net_reference"}
    import sys

    sys.path.insert(0, str(folder))
    try:
        exec(compile(OWN_NET_CODE, str(folder / "own_net.py"), "exec"), namespace)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("byom_layers_for_tests", None)
    torch.manual_seed(0)
    net = randomize_bn(namespace["Net"](width=6))
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "wrapped.pt")
    torch.save(net.state_dict(), tmp_path / "plain.pt")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "plain.safetensors"))
    torch.jit.save(torch.jit.script(net), str(tmp_path / "scripted.pt"))
    return {"net": net, "file": folder / "own_net.py", "dir": tmp_path}


def test_own_class_plus_state_dict_loads_strictly(own_net) -> None:
    import sys

    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    path_before = list(sys.path)
    for weights in ("wrapped.pt", "plain.safetensors"):
        loaded = load_model_reference(own_net["dir"] / weights, arch=f"{own_net['file']}:Net?width=6")
        assert loaded.kind == "state-dict" and loaded.sha256 is not None and loaded.has_batchnorm
        assert loaded.layout.startswith(f"built by Net(width=6) from {own_net['file']}")
        torch.testing.assert_close(logits(loaded.module, x), logits(own_net["net"], x))
    assert (
        "'module.' prefix"
        in load_model_reference(own_net["dir"] / "wrapped.pt", arch=f"{own_net['file']}:Net?width=6").layout
    )
    assert sys.path == path_before  # the file's folder was on sys.path only while it ran
    with pytest.raises(
        NrflabError, match=r"wrapped.pt does not fit Net\(\) from .*own_net.py: shapes differ at body.0.weight"
    ) as info:
        load_model_reference(own_net["dir"] / "wrapped.pt", arch=f"{own_net['file']}:Net")
    one_line(info)
    state = dict(own_net["net"].state_dict())
    state["head.weight"] = state.pop("fc.weight")
    torch.save(state, own_net["dir"] / "renamed.pt")
    with pytest.raises(NrflabError, match=r"missing fc.weight; unexpected head.weight") as info:
        load_model_reference(own_net["dir"] / "renamed.pt", arch=f"{own_net['file']}:Net?width=6")
    one_line(info)


def test_own_class_from_a_package_with_arguments(own_net, tmp_path, monkeypatch) -> None:
    package = tmp_path / "byom_pkg_models_for_tests"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "zoo.py").write_text(OWN_NET_CODE.replace("from byom_layers_for_tests", "from .layers"))
    (package / "layers.py").write_text(LAYERS_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_model_reference(
        own_net["dir"] / "plain.pt", arch="byom_pkg_models_for_tests.zoo:Net?num_classes=10,width=6"
    )
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(logits(loaded.module, x), logits(own_net["net"], x))


def test_arch_options_for_nrflab_archs_are_refused_with_an_own_class(own_net) -> None:
    arch = f"{own_net['file']}:Net?width=6"
    with pytest.raises(NrflabError, match=r"--norm, --width describe nrflab architectures.*\?key=value") as info:
        load_model_reference(own_net["dir"] / "plain.pt", arch=arch, norm="bn", width=1.0)
    one_line(info)
    with pytest.raises(NrflabError, match=r"TorchScript archive .* brings its own architecture; drop --arch") as info:
        load_model_reference(own_net["dir"] / "scripted.pt", arch=arch)
    one_line(info)
    run = save_model(
        create_model("smallcnn", "bn", 10, 1, width=0.125, seed=0), own_net["dir"] / "run" / "model.safetensors"
    )
    with pytest.raises(NrflabError, match=r"nrflab checkpoint with its own architecture") as info:
        load_model_reference(run, arch=arch)
    one_line(info)


def test_factory_arguments_are_yaml_scalars(tmp_path) -> None:
    from nrflab.models.factory import parse_factory

    path = tmp_path / "f.py"
    path.write_text("")
    spec = parse_factory(f"{path}:make?norm=none,width=2,scale=0.5,pretrained=true,name='2',empty=null")
    assert spec.path == path and spec.attribute == "make"
    assert spec.arguments == (
        ("norm", "none"),
        ("width", 2),
        ("scale", 0.5),
        ("pretrained", True),
        ("name", "2"),
        ("empty", None),
    )
    assert parse_factory("pkg.mod:Net?num_classes=10").arguments == (("num_classes", 10),)
    assert parse_factory("pkg.mod:Net").arguments == ()
    assert parse_model_reference(f"{path}:make?width=2").kind == "factory-file"
    assert parse_model_reference("pkg.mod:Net?num_classes=10").factory.module == "pkg.mod"


@pytest.mark.parametrize(
    "suffix, message",
    [
        (
            "make?widht=3",
            r"make\(widht=3\) does not fit make\(width=4, weights=None\) .*unexpected keyword argument 'widht'\)",
        ),
        ("mak", r"no function 'mak' in .*own_net.py; functions there: Net, make, build"),
        ("make?width", r"arguments are key=value pairs separated by commas, got 'width'"),
        ("make?width=[2]", r"argument width=\[2\] is not a number, bool or string"),
        ("make?width=2,width=3", r"argument 'width' given twice"),
        (
            "make?width=two",
            r"raised TypeError: .*\(called make\(width='two'\); signature make\(width=4, weights=None\)\)",
        ),
    ],
)
def test_bad_factory_arguments_name_the_function_and_the_file(suffix, message, own_net) -> None:
    with pytest.raises(NrflabError, match=message) as info:
        load_model_reference(f"{own_net['file']}:{suffix}")
    one_line(info)
    assert "nrflab_user_factory" not in str(info.value)


def test_a_missing_function_in_a_module_lists_what_is_there(tmp_path, monkeypatch) -> None:
    (tmp_path / "byom_flat_module_for_tests.py").write_text(FACTORY_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        NrflabError,
        match=r"no function 'buld' in module byom_flat_module_for_tests \(.*\); functions there: build, not_a_model, broken",
    ) as info:
        load_model_reference("byom_flat_module_for_tests:buld")
    one_line(info)


def test_one_fingerprint_for_the_same_weights_in_every_container(own_net) -> None:
    file, folder = own_net["file"], own_net["dir"]
    prints = {
        "factory": load_model_reference(f"{file}:make?width=6,weights={folder / 'plain.pt'}").fingerprint,
        "torchscript": load_model_reference(folder / "scripted.pt").fingerprint,
        "state dict": load_model_reference(folder / "wrapped.pt", arch=f"{file}:Net?width=6").fingerprint,
        "safetensors": load_model_reference(folder / "plain.safetensors", arch=f"{file}:Net?width=6").fingerprint,
        "module": load_model_reference(own_net["net"]).fingerprint,
        "traced": load_model_reference(torch.jit.trace(own_net["net"], torch.rand(2, 1, 8, 8))).fingerprint,
    }
    assert len(set(prints.values())) == 1, prints


def test_one_fingerprint_for_an_nrflab_model_in_every_container(tmp_path, images) -> None:
    from nrflab.transfer.refs import resolve_model

    original = tiny_resnet(CIFAR_MEAN, CIFAR_STD)
    run = tmp_path / "run"
    save_model(original, run / "model.safetensors")
    torch.save(original.state_dict(), tmp_path / "state.pt")
    torch.jit.save(torch.jit.trace(original, images), str(tmp_path / "traced.pt"))
    (tmp_path / "load_it.py").write_text(
        f"from nrflab.models.checkpoint import load_model\n\ndef load():\n    return load_model({str(run / 'model.safetensors')!r})\n"
    )
    prints = {
        "run directory": load_model_reference(run).fingerprint,
        "state dict": load_model_reference(tmp_path / "state.pt").fingerprint,
        "torchscript": load_model_reference(tmp_path / "traced.pt").fingerprint,
        "factory": load_model_reference(f"{tmp_path / 'load_it.py'}:load").fingerprint,
        "transfer ref": resolve_model(run).fingerprint,
    }
    assert len(set(prints.values())) == 1, prints


def test_the_fingerprint_tells_layer_classes_apart() -> None:
    bn = create_model("smallcnn", "bn", 10, 1, width=0.125, seed=0)
    frozen = create_model("smallcnn", "bn-eval", 10, 1, width=0.125, seed=0)
    frozen.load_state_dict(bn.state_dict())
    assert load_model_reference(bn).fingerprint != load_model_reference(frozen).fingerprint


def test_nrflab_state_dict_without_normalize_buffers_takes_the_given_or_the_datasets_normalization(
    tmp_path, images
) -> None:
    from nrflab.models.inspection import adopt_dataset_normalization

    original = tiny_resnet(CIFAR_MEAN, CIFAR_STD)
    net_only = {k: v for k, v in original.state_dict().items() if k.startswith("net.")}
    for name, writer in (
        ("net.pt", lambda p: torch.save(net_only, p)),
        ("net.safetensors", lambda p: save_file(net_only, str(p))),
    ):
        path = tmp_path / name
        writer(path)
        given = load_model_reference(path, arch="resnet18", norm="bn", width=0.0625, mean=CIFAR_MEAN, std=CIFAR_STD)
        assert given.normalization.origin == "user"
        assert any(n.startswith("normalization used: mean [0.4914, 0.4822, 0.4465]") for n in given.notes)
        torch.testing.assert_close(logits(given.module, images), logits(original, images))
        assert given.fingerprint == load_model_reference(original).fingerprint

        bare = load_model_reference(path, arch="resnet18", norm="bn", width=0.0625)
        assert bare.normalization.origin == "missing"
        with pytest.raises(NrflabError, match=r"without its normalize.\* buffers: give the mean/std") as info:
            check_model_fits(bare, num_classes=10, input_shape=(3, 16, 16), dataset="tiny")
        one_line(info)
        adopted = adopt_dataset_normalization(bare, mean=CIFAR_MEAN, std=CIFAR_STD, dataset="cifar10")
        assert adopted.normalization.origin == "dataset" and adopted.fingerprint == given.fingerprint
        assert adopted.notes[-1].startswith("normalization used: dataset cifar10's mean [0.4914, 0.4822, 0.4465]")
        torch.testing.assert_close(logits(adopted.module, images), logits(original, images))
        check_model_fits(adopted, num_classes=10, input_shape=(3, 16, 16), dataset="tiny")
        assert adopt_dataset_normalization(given, mean=(0.5,), std=(0.5,), dataset="x") is given


def test_factories_in_two_folders_each_import_their_own_neighbour(tmp_path) -> None:
    import sys

    widths = {}
    for width in (3, 5):
        folder = tmp_path / f"project{width}"
        folder.mkdir()
        (folder / "byom_shared_name_for_tests.py").write_text(f"WIDTH = {width}\n")
        (folder / "zoo.py").write_text(
            "from torch import nn\nfrom byom_shared_name_for_tests import WIDTH\n\n"
            "def make():\n    return nn.Sequential(nn.Conv2d(1, WIDTH, 3), nn.Flatten())\n"
        )
        loaded = load_model_reference(f"{folder / 'zoo.py'}:make")
        widths[width] = loaded.module[0].out_channels
    assert widths == {3: 3, 5: 5}
    assert "byom_shared_name_for_tests" not in sys.modules


def test_a_misspelt_model_option_is_a_type_error_as_for_spelt_out_keywords() -> None:
    """The options travel as ``**options``: a keyword that is none of them is refused, not dropped."""
    from nrflab.models.state_dicts import state_dict_to_model

    with pytest.raises(TypeError, match="load_model_reference\\(\\) got an unexpected keyword argument 'num_class'"):
        load_model_reference(tiny_resnet(), num_class=10)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="state_dict_to_model\\(\\) got an unexpected keyword argument 'widht'"):
        state_dict_to_model(tiny_resnet().state_dict(), widht=1.0)  # type: ignore[call-arg]
