"""jobs report: show one throughput report, or compare several side by side."""

from __future__ import annotations

import click

from jobs.cli.options import OutputFile
from jobs.compare import compare_table, load, plot, show, warnings


@click.group("report")
def report_group() -> None:
    """Read and compare classify-job throughput reports (_report.json)."""


@report_group.command("show")
@click.argument("report")
def report_show(report: str) -> None:
    """Print REPORT (a _report.json, or a job's output folder)."""
    click.echo(show(load(report)))


@report_group.command("compare")
@click.argument("reports", nargs=-1, required=True)
@click.option(
    "--plot", "plot_path", type=OutputFile((".png", ".svg", ".pdf")), default=None, help="Also draw the figure here."
)
def report_compare(reports: tuple[str, ...], plot_path: str | None) -> None:
    """Compare REPORTS side by side, with ratios to the first.

    \b
    jobs report compare runs/unpruned runs/pruned --plot compare.png
    """
    if len(reports) < 2:
        raise click.UsageError("compare needs at least two reports (the first is the baseline)")
    runs = [load(r) for r in reports]
    click.echo(compare_table(runs))
    for w in warnings(runs):
        click.echo(f"warning: {w}", err=True)
    if plot_path:
        plot(runs, plot_path)
        click.echo(f"wrote {plot_path}", err=True)
