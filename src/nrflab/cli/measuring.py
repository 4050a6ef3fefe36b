"""What ``evaluate`` and ``bn-analysis`` share on the command line: the spellings of the measurement
settings' fields (options generated from :class:`nrflab.measure.evaluation.MeasureSettings`), and where
results may be written (never over a model, checkpoint, dataset shard, card, run record or input)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from nrflab.cli.model_options import one_model, parse_channel_values
from nrflab.cli.schema_flags import Flag
from nrflab.core.errors import NrflabError


def channels(flag: str, help: str = "") -> Flag:
    """A per-channel option typed as ``0.49,0.48,0.45`` (``help`` for a field without a description)."""

    def parse(text: str) -> Optional[list[float]]:
        values = parse_channel_values(text, flag)
        return None if values is None else list(values)

    return Flag(names=(flag,), help=help, parse=parse)


MEASURE_FLAGS = {
    "model": Flag(
        names=("--model", "-m", "--checkpoint", "-c"),
        parse=lambda values: one_model(values, "--model/-m or --checkpoint/-c, once"),
        repeat=True,
        metavar="MODEL",
    ),
    "dataset": Flag(names=("--dataset", "-d")),
    "download": Flag(names=("--download",)),
    "allow_unverified": Flag(names=("--allow-unverified",)),
    "mean": channels("--mean"),
    "std": channels("--std"),
    "attacks": Flag(names=("--attack", "-a")),
}


def resolve_json_output(
    out: Optional[Path], *, default_dir: Path, default_name: str, inputs: tuple[Path, ...] = ()
) -> Path:
    """Where a command writes its JSON record: ``out`` as a ``.json`` file, or ``out`` (or ``default_dir``)
    as a directory holding ``default_name``. Never a model, checkpoint, dataset shard, card or run record,
    nor any input of the command (outputs never clobber inputs)."""
    from nrflab.runs.rundir import check_output_file, check_output_path

    if out is None:
        target = default_dir / default_name
    elif out.suffix and not out.is_dir():
        target = check_output_file(out, what="--out", suffix=".json")
    else:
        target = check_output_path(out, what="--out", allow_run=True) / default_name
    resolved = target.resolve()
    for p in inputs:
        if p is not None and Path(p).resolve() == resolved:
            raise NrflabError(f"refusing to write results over an input of this command: {target}")
    if target.with_suffix(".safetensors").is_file():
        raise NrflabError(
            f"refusing to write results over {target}: it is the config beside model "
            f"{target.with_suffix('.safetensors').name}"
        )
    return target


def resolve_output_dir(out: Path) -> Path:
    """A directory a command writes several files into (never a run's record, model or card)."""
    from nrflab.runs.rundir import check_output_path

    out = check_output_path(out, what="--out")
    if out.suffix.lower() in (".json", ".md", ".safetensors", ".pt", ".pth"):
        raise NrflabError(f"--out of bn-analysis is a directory, not {out}")
    return out


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
