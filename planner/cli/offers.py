"""Commands about GPUs and offers: gpus, offers, catalog status|refresh."""

from __future__ import annotations

import click

from planner.cli.common import (
    FiniteFloatRange,
    echo_lines,
    format_option,
    print_json,
    print_rich,
    setting_option,
    settings,
)


@click.command()
@format_option("table", "json")
def gpus(fmt: str) -> None:
    """List the canonical GPU table with the aliases providers use.

    Example: gpuplan gpus --format json
    """
    from planner.app.model import gpus as run
    from planner.present.offers import gpus_table, gpus_to_list

    rows = run()
    if fmt == "json":
        print_json(gpus_to_list(rows))
    else:
        print_rich(gpus_table(rows))


@click.command()
@setting_option("gpu", help="Canonical GPU name or a provider alias (H100, a10g).")
@setting_option("providers", "--provider", "--providers", help="Comma-separated: aws,gcp,...")
@setting_option("regions", "--region", "--regions", help="Comma-separated region substrings.")
@setting_option("instance_type")
@click.option(
    "--min-gpu-memory",
    type=FiniteFloatRange(min=0),
    default=None,
    help="Minimum memory per GPU, in GB as marketed.",
)
@setting_option("gpus", help="Exact GPU count per machine.")
@setting_option("max_price", help="USD per hour.")
@setting_option("spot", "--spot/--on-demand")
@setting_option("horizon_months")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most N rows.")
@format_option("table", "json", "csv")
@click.pass_context
def offers(
    ctx: click.Context,
    min_gpu_memory: float | None,
    limit: int | None,
    fmt: str,
    **_: object,
) -> None:
    """GPU offers from the catalog (cache, else the embedded snapshot), cheapest first.

    Example: gpuplan offers --gpu H100 --gpus 8 --spot
    """
    from planner.app.offers import list_offers
    from planner.present.offers import offers_csv, offers_table, offers_to_dict

    found = list_offers(settings(ctx), min_gpu_memory_gb=min_gpu_memory, limit=limit)
    echo_lines([f"warning: {w}" for w in found.warnings], err=True)
    if fmt == "json":
        print_json(offers_to_dict(found.rows, found.spot, found.horizon_months))
    elif fmt == "csv":
        click.echo(offers_csv(found.rows), nl=False)
    else:
        print_rich(offers_table(found.rows, found.spot))


@click.group()
def catalog() -> None:
    """The offer catalog: `catalog status`, `catalog refresh`."""


@catalog.command("status")
@format_option("table", "json")
def catalog_status(fmt: str) -> None:
    """Where each provider's offers come from, how old they are, and how many.

    Example: gpuplan catalog status
    """
    from planner.app.offers import catalog_status as run
    from planner.present.offers import catalog_table, catalog_to_dict

    cat = run()
    echo_lines([f"warning: {w}" for w in cat.warnings], err=True)
    if fmt == "json":
        print_json(catalog_to_dict(cat))
    else:
        print_rich(catalog_table(cat))


@catalog.command("refresh")
@click.option(
    "--provider",
    "providers",
    multiple=True,
    help="Comma-separated providers, or the flag repeated (default: all with credentials).",
)
@click.option("--region", "regions", multiple=True, help="Limit to these regions (repeatable).")
def catalog_refresh(providers: tuple[str, ...], regions: tuple[str, ...]) -> None:
    """Fetch live offers from the providers' APIs into the user cache, in parallel.

    Providers without credentials are skipped with a warning unless named with --provider.
    Exit code 4 when the one named provider, or every provider, failed.

    Example: gpuplan catalog refresh --provider aws,runpod
    """
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from planner.app.offers import refresh_catalog
    from planner.present.offers import refresh_lines

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("refreshing the catalog", total=None)
        result = refresh_catalog(
            ",".join(providers) or None, regions or None, on_done=lambda _o: progress.advance(task)
        )
    echo_lines(refresh_lines(result.outcomes))
    if result.error is not None:
        raise result.error
