"""The Typer application every command module registers on."""

import typer

app = typer.Typer(
    name="nrflab",
    help="nrflab: batch normalization, non-robust features, adversarial vulnerability and transfer, measured.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
