"""The pretrained models nrflab ships entries for: AutoAttack's example ResNet-18 and a few RobustBench
CIFAR-10 models (an entry records where the weights come from, their licence, architecture, input
normalization and reported accuracy; :mod:`nrflab.models.pretrained` finds, verifies and loads them).

To add one: a row in ``_ROBUSTBENCH`` (and the model's family in ``_FAMILIES``) for a RobustBench model,
else one ``PretrainedEntry`` in the tuple below (or :func:`nrflab.models.pretrained.register_pretrained`
from your own code).
"""

from __future__ import annotations

from dataclasses import dataclass

from nrflab.models.pretrained import PretrainedEntry, register_pretrained

CIFAR10_MEAN_MADRY = (0.4914, 0.4822, 0.4465)
CIFAR10_STD_MADRY = (0.2023, 0.1994, 0.2010)
_RB_SOURCE = (
    "RobustBench model zoo, https://github.com/RobustBench/robustbench (model_info/cifar10/{threat}/{name}.json)"
)
_RB_LICENCE = (
    "distributed through RobustBench (repository licence MIT); the weights are the authors' -- check "
    "the paper's terms before redistributing"
)


def _gdrive(file_id: str) -> str:
    return f"https://docs.google.com/uc?export=download&confirm=t&id={file_id}"


@dataclass(frozen=True)
class _Family:
    """What the RobustBench entries of one model share across threat models: its architecture (``arch``
    None: not one nrflab builds), a note added to the description and the input normalization it expects."""

    architecture: str
    arch: str | None
    note: str = ""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


# The RobustBench models listed, by name: what their entries share across threat models.
_FAMILIES = {
    "Standard": _Family(
        "WideResNet-28-10", None, note=" (not an nrflab architecture: listed for reference, load it with a factory)"
    ),
    "Sehwag2021Proxy_R18": _Family("ResNet-18", "resnet18", note=" with ~6M synthetic images"),
    "Addepalli2022Efficient_RN18": _Family("ResNet-18", "resnet18"),
    "Engstrom2019Robustness": _Family(
        "ResNet-50", "resnet50", note=" (robustness library)", mean=CIFAR10_MEAN_MADRY, std=CIFAR10_STD_MADRY
    ),
}
# One row an entry: (name, threat, eps, reported clean and robust accuracy, Google Drive file id).
_ROBUSTBENCH = (
    ("Standard", "standard", "8/255", 0.9478, 0.0, "1t98aEuzeTL8P7Kpd5DIrCoCL21BNZUhC"),
    ("Sehwag2021Proxy_R18", "Linf", "8/255", 0.8438, 0.5443, "1-ZgoSlD_AMhtXdnUElilxVXnzK2DcHuu"),
    ("Sehwag2021Proxy_R18", "L2", "0.5", 0.8952, 0.7339, "1zPjjZj9wujBNkAmHHHIikem6_aIjMhXG"),
    ("Addepalli2022Efficient_RN18", "Linf", "8/255", 0.8571, 0.5248, "1m5vhdzIUUKhDbsZdOG9z76Eyp6f4xe_f"),
    ("Engstrom2019Robustness", "Linf", "8/255", 0.8703, 0.4925, "1etqmQsksNIWBvBQ4r8ZFk_3FJlLWr8Rr"),
    ("Engstrom2019Robustness", "L2", "0.5", 0.9083, 0.6924, "1O8rGa6xOUIRwQ-M4ESrCjzknby8TM2ZE"),
)


def _robustbench(*, name: str, threat: str, eps: str, clean: float, robust: float, gdrive_id: str) -> PretrainedEntry:
    """The entry of one row of ``_ROBUSTBENCH``."""
    family = _FAMILIES[name]
    kind = "standard training" if threat == "standard" else f"adversarial training, {threat} eps {eps}"
    folder = "Linf" if threat in ("Linf", "standard") else "L2"
    return PretrainedEntry(
        name=f"robustbench/cifar10/{threat}/{name}",
        description=f"RobustBench {name}: CIFAR-10 {family.architecture}, {kind}{family.note}",
        dataset="cifar10",
        architecture=family.architecture,
        arch=family.arch,
        source=_RB_SOURCE.format(threat=folder, name=name),
        licence=_RB_LICENCE,
        threat_model="none (standard)" if threat == "standard" else f"{threat} eps {eps}",
        filename=f"cifar10/{folder}/{name}.pt",
        mean=family.mean,
        std=family.std,
        reported_clean_acc=clean,
        reported_robust_acc=robust,
        reported_by="RobustBench leaderboard (AutoAttack, full CIFAR-10 test set)",
        sha256=None,
        url=_gdrive(gdrive_id),
    )


for _entry in (
    PretrainedEntry(
        name="pyautoattack/cifar10/resnet18",
        description="the CIFAR-10 ResNet-18 (BatchNorm) shipped as AutoAttack's example model "
        "(pyautoattack wheel, examples/model_test.pt); takes raw [0,1] inputs",
        dataset="cifar10",
        architecture="CIFAR ResNet-18 (BasicBlock [2,2,2,2], BatchNorm)",
        arch="resnet18",
        source="pyautoattack 0.2.0 on PyPI (examples/model_test.pt); upstream https://github.com/fra31/auto-attack",
        licence="MIT (as the pyautoattack package states)",
        threat_model="not documented by its source",
        filename="pyautoattack/model_test.pt",
        reported_by="not documented by its source",
        sha256="399f52da9f914c323fa5a6096d60f460a3449a59b64a6405200c1e629f8425a7",
        url=None,
        package_file=("pyautoattack", "examples/model_test.pt"),
    ),
    *(
        _robustbench(name=name, threat=threat, eps=eps, clean=clean, robust=robust, gdrive_id=gdrive_id)
        for name, threat, eps, clean, robust, gdrive_id in _ROBUSTBENCH
    ),
):
    register_pretrained(_entry)


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
