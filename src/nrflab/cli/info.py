"""``nrflab list``: what datasets, architectures, normalizations, attacks, experiments and pretrained models exist."""

from __future__ import annotations

import typer

from nrflab.cli.app import app


@app.command("list")
def list_choices(
    pretrained: bool = typer.Option(
        False,
        "--pretrained",
        help="List the pretrained registry: source, licence, architecture, normalization, dataset, reported accuracy, sha256 and where the weights are.",
    ),
) -> None:
    """List the registered datasets, architectures, normalizations, attacks and experiments."""
    if pretrained:
        from nrflab.models.pretrained import format_pretrained_table

        for line in format_pretrained_table():
            typer.echo(line)
        typer.echo(
            "load one with `--model pretrained:NAME` (weights from $NRFLAB_WEIGHTS or ~/.nrflab/weights, "
            "or downloaded and checked against the pinned sha256)"
        )
        return
    from nrflab.attacks import attack_kind, list_attacks
    from nrflab.cli.experiments import EXPERIMENTS
    from nrflab.data import available_datasets
    from nrflab.models import ARCHS, NORM_DESCRIPTIONS

    typer.echo("datasets:      " + ", ".join(available_datasets()) + ", or a directory built by `nrflab build-dataset`")
    typer.echo("architectures:")
    for name, spec in sorted(ARCHS.items()):
        typer.echo(f"  {name:<10} {spec.description}")
    typer.echo("normalizations:")
    for name, text in NORM_DESCRIPTIONS.items():
        typer.echo(f"  {name:<10} {text}")
    typer.echo(
        "attacks:       "
        + ", ".join(k for k in list_attacks() if attack_kind(k).perturbs)
        + "  (spec: KIND:eps=E,steps=N,step=S,random_start=1,restarts=R,targeted=1)"
    )
    typer.echo("experiments:")
    for name, text in EXPERIMENTS.items():
        typer.echo(f"  {name:<10} {text}")
    from nrflab.models.pretrained import available_pretrained

    typer.echo(f"pretrained:    {len(available_pretrained())} registered models (`nrflab list --pretrained`)")
