"""The pretrained models nrflab ships entries for: AutoAttack's example ResNet-18 and a few RobustBench
CIFAR-10 models (an entry records where the weights come from, their licence, architecture, input
normalization and reported accuracy; :mod:`nrflab.models.pretrained` finds, verifies and loads them).

To add one: one ``PretrainedEntry`` in the tuple below (or :func:`nrflab.models.pretrained.register_pretrained`
from your own code).
"""

from __future__ import annotations

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


def _robustbench(
    name: str,
    threat: str,
    *,
    architecture: str,
    arch: str | None,
    clean: float,
    robust: float,
    gdrive_id: str,
    eps: str,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    note: str = "",
) -> PretrainedEntry:
    kind = "standard training" if threat == "standard" else f"adversarial training, {threat} eps {eps}"
    folder = "Linf" if threat in ("Linf", "standard") else "L2"
    return PretrainedEntry(
        name=f"robustbench/cifar10/{threat}/{name}",
        description=f"RobustBench {name}: CIFAR-10 {architecture}, {kind}{note}",
        dataset="cifar10",
        architecture=architecture,
        arch=arch,
        source=_RB_SOURCE.format(threat=folder, name=name),
        licence=_RB_LICENCE,
        threat_model="none (standard)" if threat == "standard" else f"{threat} eps {eps}",
        filename=f"cifar10/{folder}/{name}.pt",
        mean=mean,
        std=std,
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
    _robustbench(
        "Standard",
        "standard",
        architecture="WideResNet-28-10",
        arch=None,
        clean=0.9478,
        robust=0.0,
        gdrive_id="1t98aEuzeTL8P7Kpd5DIrCoCL21BNZUhC",
        eps="8/255",
        note=" (not an nrflab architecture: listed for reference, load it with a factory)",
    ),
    _robustbench(
        "Sehwag2021Proxy_R18",
        "Linf",
        architecture="ResNet-18",
        arch="resnet18",
        clean=0.8438,
        robust=0.5443,
        gdrive_id="1-ZgoSlD_AMhtXdnUElilxVXnzK2DcHuu",
        eps="8/255",
        note=" with ~6M synthetic images",
    ),
    _robustbench(
        "Sehwag2021Proxy_R18",
        "L2",
        architecture="ResNet-18",
        arch="resnet18",
        clean=0.8952,
        robust=0.7339,
        gdrive_id="1zPjjZj9wujBNkAmHHHIikem6_aIjMhXG",
        eps="0.5",
        note=" with ~6M synthetic images",
    ),
    _robustbench(
        "Addepalli2022Efficient_RN18",
        "Linf",
        architecture="ResNet-18",
        arch="resnet18",
        clean=0.8571,
        robust=0.5248,
        gdrive_id="1m5vhdzIUUKhDbsZdOG9z76Eyp6f4xe_f",
        eps="8/255",
    ),
    _robustbench(
        "Engstrom2019Robustness",
        "Linf",
        architecture="ResNet-50",
        arch="resnet50",
        clean=0.8703,
        robust=0.4925,
        gdrive_id="1etqmQsksNIWBvBQ4r8ZFk_3FJlLWr8Rr",
        eps="8/255",
        mean=CIFAR10_MEAN_MADRY,
        std=CIFAR10_STD_MADRY,
        note=" (robustness library)",
    ),
    _robustbench(
        "Engstrom2019Robustness",
        "L2",
        architecture="ResNet-50",
        arch="resnet50",
        clean=0.9083,
        robust=0.6924,
        gdrive_id="1O8rGa6xOUIRwQ-M4ESrCjzknby8TM2ZE",
        eps="0.5",
        mean=CIFAR10_MEAN_MADRY,
        std=CIFAR10_STD_MADRY,
        note=" (robustness library)",
    ),
):
    register_pretrained(_entry)


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
