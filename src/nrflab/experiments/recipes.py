"""The recipe files shipped in the package (``nrflab/recipes/``): every experiment's presets written out.

``python -m nrflab.experiments.recipes [ROOT]`` (re)writes ``ROOT/<experiment>/<scale>.yaml`` for the cpu
and paper scales (default ROOT: the package's ``recipes`` folder); a test checks that the files still
equal the presets. Users name them without a path: ``--recipe cpu``, ``--recipe transfer/paper``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from nrflab.core.io import atomic_write_text
from nrflab.experiments.overrides import PACKAGED_RECIPES
from nrflab.experiments.registry import experiments
from nrflab.experiments.reproduce import recipe_text

SCALES_WRITTEN = ("cpu", "paper")


def write_recipe_files(root: str | Path) -> list[Path]:
    """Write every registered experiment's cpu and paper presets as recipe files under ``root``."""
    written = []
    for name, spec in experiments().items():
        for scale in SCALES_WRITTEN:
            path = Path(root) / name / f"{scale}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            note = spec.scale_notes.get(scale)
            header = (
                f"# `{name}` at the {scale} scale: {spec.summary}.\n"
                f"# nrflab experiment {name} --recipe {name}/{scale}  (any key can be changed with --set)\n"
            )
            if note:
                header += f"# {note}\n"
            atomic_write_text(path, header + recipe_text(spec, spec.presets[scale], scale))
            written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    for p in write_recipe_files(sys.argv[1] if len(sys.argv) > 1 else PACKAGED_RECIPES):
        print(p)
