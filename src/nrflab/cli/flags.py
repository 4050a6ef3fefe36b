"""How the fields of ``TrainConfig``, ``TransferConfig``, ``Overrides`` and the build settings (the keywords of
``features.make_settings``) are spelled on the command line.

Options are generated from the fields (:mod:`nrflab.cli.schema_flags`); this module holds only what the
fields do not say themselves: short names and old spellings users depend on, the text forms
(``--milestones 50,100``, ``--mean 0.49,0.48,0.45``), and the help of fields that carry no description
yet. An entry for a field that does not exist fails when the command is registered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nrflab.cli.measuring import channels
from nrflab.cli.model_options import MEAN_HELP, STD_HELP
from nrflab.cli.schema_flags import Flag, split_list
from nrflab.core.errors import NrflabError
from nrflab.core.validation import DEVICE_HELP
from nrflab.experiments.overrides import read_recipes
from nrflab.features import KIND_DEFAULTS, LABEL_POLICIES


def _milestones(text: str) -> list[int]:
    try:
        return [int(m) for m in text.split(",") if m.strip()]
    except ValueError:
        raise NrflabError(f"--milestones must be comma-separated integers, got {text!r}") from None


def _batch_size(text: str) -> int | str:
    """``--eval-batch-size``: ``auto`` or a whole number."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise NrflabError(f"--eval-batch-size must be auto or a whole number, got {text!r}") from None


def _models(names: Sequence[str], help: str) -> Flag:
    return Flag(names=tuple(names), help=help, parse=split_list, repeat=True)


SEED_HELP = "Seed (0..2^32-1)"

TRAIN_FLAGS = {
    "dataset": Flag(names=("--dataset", "-d"), help="Dataset name or built dataset directory (default cifar10)."),
    "data_root": Flag(help="Where the dataset's files are."),
    "arch": Flag(help="Architecture (default resnet18)."),
    "norm": Flag(help="Normalization (default bn)."),
    "width": Flag(help="Channel width multiplier (e.g. 0.25 for CPU runs)."),
    "init": Flag(help="Weight initialization: auto, kaiming, torch, fixup."),
    "epochs": Flag(help="Training epochs."),
    "batch_size": Flag(help="Training batch size."),
    "optimizer": Flag(help="Optimizer."),
    "lr": Flag(help="Learning rate (peak rate for onecycle)."),
    "momentum": Flag(help="SGD momentum."),
    "weight_decay": Flag(help="Weight decay."),
    "schedule": Flag(help="Learning-rate schedule."),
    "milestones": Flag(help="Comma-separated epochs for multistep, e.g. 50,100.", parse=_milestones),
    "gamma": Flag(help="Learning-rate factor at each multistep milestone."),
    "warmup_epochs": Flag(
        help="Linear learning-rate warm-up over this many epochs (multistep, cosine, constant schedules)."
    ),
    "augment": Flag(help="Random crop (and flip) augmentation."),
    "flip": Flag(help="Horizontal flips in the augmentation."),
    "seed": Flag(help=f"{SEED_HELP} of the initial weights, the data order and the augmentation."),
    "device": Flag(help=f"{DEVICE_HELP}."),
    "eval_attacks": Flag(
        names=("--eval-attack",),
        help="Per-epoch attack spec (repeatable), e.g. 'pgd-l2:eps=0.25,step=0.1,steps=10'. Default: the dataset preset.",
    ),
    "ligs": Flag(help="Record LIGS every epoch."),
    "ligs_sigma": Flag(help="LIGS noise std (pixel scale)."),
    "eval_size": Flag(help="Evaluate on a fixed seeded subset of N test images."),
    "eval_batch_size": Flag(
        help="Batch size of the per-epoch evaluation: N, or auto (256 on CPU; on CUDA the largest that fits a "
        "quarter of free memory, up to 4096).",
        parse=_batch_size,
    ),
    "eval_shifted_labels": Flag(help="Also record accuracy against (y+1) mod C."),
    "probe_every": Flag(
        help="Also record the dataset's probes (e.g. planted-feature reliance) every N steps of the first "
        "--probe-epochs epochs, in probes.csv."
    ),
    "probe_epochs": Flag(help="How many epochs --probe-every covers (default 1)."),
    "adv_train": Flag(help="Adversarial training."),
    "adv_eps": Flag(help="Adversarial training radius (default 0.5 for L2, 8/255 for Linf)."),
    "adv_steps": Flag(help="Adversarial training attack steps (default 7)."),
    "adv_step_size": Flag(help="Adversarial training attack step (default: the kind's, or 2.5 * eps / steps)."),
    "attack_mode": Flag(
        help="Model mode while crafting training attacks: eval, or train (BN batch stats, as the official code)."
    ),
    "keep_checkpoints": Flag(help="Also keep the model of every N-th epoch (for early-stopped transfer sources)."),
    "channels_last": Flag(help="channels_last memory format (faster convs on CPU and GPU)."),
    "amp": Flag(
        help="Mixed precision for the training steps: none (fp32) or bf16 (bfloat16 autocast). Evaluation and "
        "every recorded robustness number stay fp32."
    ),
    "compile": Flag(
        help="torch.compile the model for the training steps (reduce-overhead: CUDA graphs). Pays after its "
        "compile time on long GPU runs; evaluation stays eager fp32."
    ),
    "preset": Flag(help="Dataset preset to apply (default: chosen from the dataset)."),
}

MODEL_FORMS = (
    "run directories, RUN_DIR@epoch=K (a kept epoch), nrflab model .safetensors files, or models from "
    "outside nrflab: state dicts (.safetensors/.pt, see --arch/--norm/--num-classes), TorchScript files, "
    "pretrained:NAME, or package.module:function factories (a factory RUNS YOUR OWN CODE)"
)
OUTSIDE = "of every model from outside nrflab (a bare state dict)"

TRANSFER_FLAGS = {
    "sources": _models(
        ("--sources", "--source", "-s"),
        f"Source models: {MODEL_FORMS}. Repeat the option or give a comma/space-separated list "
        "(--source is the same option, as in build-dataset).",
    ),
    "targets": _models(
        ("--targets", "--target", "-t"), "Target models (same forms as --sources; --target is the same)."
    ),
    "dataset": Flag(
        names=("--dataset", "-d"), help="Dataset whose test set is attacked (default: the first source run's dataset)."
    ),
    "data_root": Flag(help="Where the dataset's files are."),
    "attack": Flag(
        names=("--attack", "-a"),
        help="pgd-linf (default), pgd-l2, fgsm, fgm-l2 (with --eps), or a full spec like 'pgd-linf:eps=0.1,steps=10'.",
    ),
    "eps": Flag(help="Attack radius (pixel scale), for an attack given by kind."),
    "steps": Flag(help="Attack iterations (default 10)."),
    "step_size": Flag(help="Attack step (default 2.5 * eps / steps)."),
    "targeted": Flag(
        names=("--targeted/--untargeted",), help="Targeted attack; success = the target predicts the target class."
    ),
    "target_policy": Flag(help="Target classes: next = (y+1) mod C, random = a seeded uniform wrong class."),
    "source_epoch": Flag(help="Use epoch K's kept checkpoint of every source run (train with --keep-checkpoints)."),
    "boost": Flag(
        help="none; no-bn-twin (the source's twin run with norm none); early-stop (an earlier checkpoint chosen by "
        "--early-stop); both (all combinations). Boosted variants are compared with the sources as given."
    ),
    "early_stop": Flag(
        help="Early-stop rule: epoch=K, frac=X (earliest kept epoch with clean acc >= X * final; default frac=0.9), "
        "or ligs=F (highest-LIGS kept epoch with clean acc >= F)."
    ),
    "twin_candidates": _models(
        ("--twin-candidates",),
        "Run dirs, or folders of run dirs, to search for no-BN twins (default: the sources' parent folders).",
    ),
    "twins": Flag(
        names=("--twin",),
        help="SOURCE=TWIN: your own no-BN twin of a source (any model reference; repeatable), for --boost "
        "no-bn-twin or both, instead of searching the twin candidates. SOURCE is written as in --sources.",
        repeat=True,
        metavar="SOURCE=TWIN",
    ),
    "limit": Flag(
        help="Attack N test images drawn at random (without replacement) with --seed, kept in test-set order; the "
        "same N and seed give the same images. Not the first N: test sets are often sorted by class. "
        "Default: the whole test set."
    ),
    "seed": Flag(help=f"{SEED_HELP}, default 0, for the --limit subset, random starts and random target classes."),
    "device": Flag(help=f"{DEVICE_HELP} (default auto)."),
    "batch_size": Flag(help="Images per batch (default 256)."),
    "include_self": Flag(
        names=("--include-self/--exclude-self",),
        help="Count a model as its own target in averages (default: excluded).",
    ),
    "arch": Flag(help=f"Architecture {OUTSIDE} (read off the weights if omitted)."),
    "norm": Flag(help=f"Normalization {OUTSIDE}."),
    "num_classes": Flag(help=f"Classes {OUTSIDE}."),
    "width": Flag(help=f"Width multiplier {OUTSIDE}."),
    "mean": channels("--mean", help=MEAN_HELP),
    "std": channels("--std", help=STD_HELP),
    "out": Flag(
        names=("--out", "-o"),
        help="Output directory (cached adversarial examples, pair results, matrix CSV/JSON, heat maps, summary.md). "
        "A training run, a model file, a built dataset or a directory holding other files is refused.",
    ),
}

_DEFAULTS = ", ".join(f"{k}: {a.steps} steps, eps {a.eps:g}, step {a.step_size:g}" for k, a in KIND_DEFAULTS.items())

BUILD_FLAGS = {
    "steps": Flag(help=f"PGD steps. Defaults: {_DEFAULTS}."),
    "eps": Flag(help="L2 radius (pixel scale; 1000 = unbounded for the inversions)."),
    "step_size": Flag(
        help="L2 step size (default: the paper step for the kind's own eps and steps, else 2.5 * eps / steps, as "
        "evaluate; a resumed build keeps the step its card records)."
    ),
    "seed": Flag(
        help=f"{SEED_HELP}, default 0, of the --limit subset, the random start images and random targets (per shard)."
    ),
    "label_policy": Flag(help=f"Labels to store: {', '.join(LABEL_POLICIES)} (default target)."),
    "shard_size": Flag(help="Images per shard (the unit of resuming; default 1000)."),
    "dtype": Flag(help="Stored image type: uint8 (default; quantizes to 1/255), float16, float32."),
    "fake_relu": Flag(names=("--fake-relu",), help="d_r/d_nr: pass gradients through the last ReLU (official code)."),
    "layer": Flag(
        help="d_r/d_nr with a model that has no .features(x): the name of the layer whose output is the representation."
    ),
    "limit": Flag(help="Build from a seeded random subset of N training images (seed: --seed)."),
}

SCALE_HELP = (
    "Settings preset: cpu (the embedded data, minutes on a laptop), paper (the official CIFAR-10 settings) or "
    "quick (a seconds-long check of the pipeline, the size the tests use)."
)
SET_HELP = (
    "Change one setting: dotted KEY=VALUE into the experiment's settings, e.g. twins.epochs=40 or "
    "'twins.eval_attacks=[\"pgd-l2:eps=0.5,step=0.1,steps=10\"]'; repeatable. Every key: "
    "nrflab experiment NAME --show-settings."
)
RECIPE_HELP = (
    "A recipe file (YAML: experiment, scale, settings), or a shipped one by name: cpu, paper, transfer/paper; "
    "repeatable."
)
BACKEND_HELP = "Where runs go: local (this machine, --workers processes) or ray (a Ray cluster, see --ray-address)."


#: The flags every experiment command shares (the fields of ``experiments.overrides.Overrides``).
EXPERIMENT_FLAGS = {
    "scale": Flag(help=SCALE_HELP),
    "recipes": Flag(names=("--recipe",), help=RECIPE_HELP, parse=read_recipes, repeat=True),
    "dataset": Flag(
        names=("--dataset", "-d"),
        help="Dataset name (e.g. cifar10, imagefolder:root=DIR) or built dataset directory; default: the "
        "experiment's (the embedded MNIST subset for the demo).",
    ),
    "data_root": Flag(help="Where file-based datasets live."),
    "arch": Flag(help="Architecture of every model."),
    "width": Flag(help="Channel-width multiplier."),
    "device": Flag(help=f"{DEVICE_HELP}."),
    "epochs": Flag(help="Epochs of every training stage."),
    "seeds": Flag(names=("--seed",), help="Seed(s); repeat for several."),
    "assignments": Flag(names=("--set",), help=SET_HELP),
}


#: ``nrflab reproduce``: the experiment flags, spelled for every experiment of the chain at once.
REPRODUCE_FLAGS = {
    **EXPERIMENT_FLAGS,
    "dataset": Flag(names=("--dataset", "-d"), help="Dataset of every experiment that takes one."),
    "data_root": Flag(help="Where file-based datasets live (e.g. the folder holding cifar-10-batches-py)."),
    "epochs": Flag(help="Epochs of every training stage of every experiment."),
    "seeds": Flag(names=("--seed",), help="Seed(s) of every experiment; repeatable."),
    "assignments": Flag(
        names=("--set",),
        help=SET_HELP + " Prefix a key with an experiment's name to change it there only (features.twins.lr=0.05).",
    ),
}


def _at_least_one(flag: str) -> Callable[[str], int]:
    """A whole number >= 1 (``--workers``, ``--threads``), or one error line naming the flag."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise NrflabError(f"{flag} must be a whole number >= 1, got {text!r}") from None
        if value < 1:
            raise NrflabError(f"{flag} must be a whole number >= 1, got {value}")
        return value

    return parse


#: The fields of ``runs.jobs.Execution`` as ``nrflab reproduce`` spells them.
EXECUTION_FLAGS = {
    "workers": Flag(
        names=("--workers", "-j"),
        help="Independent runs in parallel local processes (each gets cores/workers torch threads).",
        parse=_at_least_one("--workers"),
        metavar="INTEGER",
    ),
    "backend": Flag(help=BACKEND_HELP),
    "ray_address": Flag(help="Address of a running Ray cluster (HOST:PORT or auto); default: a local Ray instance."),
    "cpus_per_run": Flag(help="Ray: CPUs each run reserves (= its torch threads)."),
    "gpus_per_run": Flag(help="Ray: GPUs each run reserves (e.g. 1, or 0.5 to share)."),
    "threads": Flag(
        help="Torch threads per run (default: all cores with one worker, cores/workers with several). Runs give "
        "the same numbers for the same seed and threads per run, wherever they run.",
        parse=_at_least_one("--threads"),
        metavar="INTEGER",
    ),
    "verbose": Flag(names=("--verbose", "-v"), help="Every run's per-epoch lines (workers included)."),
}

#: The fields of ``runs.jobs.Execution`` as ``nrflab sweep`` spells them.
SWEEP_EXECUTION_FLAGS = {
    "backend": Flag(help="local (this machine) or ray (a Ray cluster)."),
    "workers": Flag(help="Local backend: runs in parallel processes (threads split between them)."),
    "ray_address": Flag(help="Ray cluster address (default: start a local Ray instance)."),
    "cpus_per_run": Flag(help="Ray backend: CPUs reserved per run."),
    "gpus_per_run": Flag(help="Ray backend: GPUs reserved per run (fractions share a GPU)."),
}


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
