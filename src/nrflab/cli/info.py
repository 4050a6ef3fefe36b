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
    from nrflab.data import list_datasets
    from nrflab.experiments.registry import select
    from nrflab.models import ARCHS, NORMS, list_archs, list_norms, list_pretrained

    typer.echo("datasets:      " + ", ".join(list_datasets()) + ", or a directory built by `nrflab build-dataset`")
    for title, names, describe in (
        ("architectures", list_archs(), lambda n: ARCHS.get(n).description),
        ("normalizations", list_norms(), lambda n: NORMS.get(n).description),
    ):
        typer.echo(f"{title}:")
        for name in names:
            typer.echo(f"  {name:<10} {describe(name)}")
    typer.echo(
        "attacks:       "
        + ", ".join(k for k in list_attacks() if attack_kind(k).perturbs)
        + "  (spec: KIND:eps=E,steps=N,step=S,random_start=1,restarts=R,targeted=1)"
    )
    typer.echo("experiments:")
    for spec in select(None):
        typer.echo(f"  {spec.name:<10} {spec.summary}")
    typer.echo(f"pretrained:    {len(list_pretrained())} registered models (`nrflab list --pretrained`)")
