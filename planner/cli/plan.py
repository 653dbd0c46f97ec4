"""The planning command: recommend."""

from __future__ import annotations

import click

from planner.cli.common import (
    echo_lines,
    planning_options,
    print_json,
    print_rich,
    settings,
    terminal_width,
)


@click.command()
@click.argument("model", required=False)
@planning_options
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="How many plans the table and the JSON list.",
)
@click.option("--explain", is_flag=True, help="Why the top plan won and the usual guesses lost.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write cost per 1M tokens vs tokens/s with the Pareto frontier (.png/.svg).",
)
@click.option(
    "--save-plan",
    "plan_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the top plan as JSON for `gpuplan generate --plan`.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format (json: every plan in full detail, for scripts).",
)
@click.pass_context
def recommend(
    ctx: click.Context,
    toml_file: str | None,
    config_path: str | None,
    from_hub: bool,
    top: int,
    explain: bool,
    plot_path: str | None,
    plan_path: str | None,
    fmt: str,
    **_: object,
) -> None:
    """Rank GPU offers that will run MODEL with vLLM, by cost per token (or --objective).

    MODEL, the workload and the constraints also come from GPUPLAN_<KEY> variables and
    ./gpuplan.toml (flag > variable > file > default).

    Example: gpuplan recommend llama-3.1-70b --quant auto --context 16384 --concurrency 8
    """
    from planner.app import plan as app
    from planner.present.report import recommendation_tables, recommendation_to_dict

    app.check_output_paths(plot_path, plan_path)
    rec = app.recommend(settings(ctx, toml_file), config_path=config_path, from_hub=from_hub)
    echo_lines([f"warning: {w}" for w in rec.warnings], err=True)
    if plan_path:
        app.save_plan(rec.ranking.plans[0], plan_path)
    if plot_path:
        app.write_plot(rec, plot_path)
    if fmt == "json":
        print_json(
            recommendation_to_dict(rec.ranking, top, rec.sources, rec.suggestion, rec.spread)
        )
    else:
        width = terminal_width()
        unlevelled = app.without_service_level(rec) if explain else None
        tables = recommendation_tables(
            rec.ranking, top, explain, width, rec.suggestion, rec.spread, unlevelled
        )
        print_rich(*tables, width=width)
        if plan_path:
            click.echo(f"plan written to {plan_path}")
