"""Commands that run the committed project: deploy, status, destroy."""

from __future__ import annotations

from typing import Any

import click

from planner.cli.common import (
    F,
    confirm_or_refuse,
    echo_lines,
    format_option,
    log_stderr,
    print_json,
    setting_option,
    settings,
    toml_option,
)
from planner.settings import default_of

_SHIP_OPTIONS = [
    toml_option,
    click.option(
        "--dir",
        "project_dir",
        type=click.Path(file_okay=False),
        default=None,
        help="The generated project (default: [deploy].out of gpuplan.toml).",
    ),
    setting_option("stack", default=None, help="Pulumi stack (default: [deploy].stack, or dev)."),
    format_option("text", "json", default="text"),
]


def ship_options(f: F) -> F:
    for option in reversed(_SHIP_OPTIONS):
        f = option(f)
    return f


def _stack(
    ctx: click.Context, toml_file: str | None, project_dir: str | None, create: bool = True
) -> Any:
    from planner.app.ship import open_stack

    s = settings(ctx, toml_file)
    return s, open_stack(s, project_dir, create)


@click.command()
@ship_options
@click.option("--yes", is_flag=True, help="Deploy without asking (required when not a TTY).")
@click.option("--preview", is_flag=True, help="Only show what would change.")
@setting_option(
    "wait_healthy",
    default=None,
    help="Seconds to wait for /health and /v1/models (default: [deploy].wait_healthy, "
    f"{default_of('wait_healthy')}; 0: do not check, e.g. from a CI runner outside the allowed "
    "networks).",
)
@click.option(
    "--destroy-on-failure",
    is_flag=True,
    help="Destroy the stack when the model never becomes healthy.",
)
@click.pass_context
def deploy(
    ctx: click.Context,
    toml_file: str | None,
    project_dir: str | None,
    fmt: str,
    yes: bool,
    preview: bool,
    destroy_on_failure: bool,
    **_: object,
) -> None:
    """Run the committed project with Pulumi, then wait until the model answers.

    Example: gpuplan deploy --yes --format json
    """
    from planner.app import ship
    from planner.present.project import deployed_line

    s, stack = _stack(ctx, toml_file, project_dir)
    if preview:
        doc = ship.preview(stack, s, log_stderr)
        for warning in doc["warnings"]:
            click.echo(f"warning: {warning}", err=True)
        if fmt == "json":
            print_json(doc)
        else:
            click.echo(f"preview of {stack.name}: {doc['summary']}")
        return
    drifted = ship.drift_warning(stack, s)
    if drifted:
        click.echo(f"warning: {drifted}", err=True)
    confirm_or_refuse(yes, f"deploy stack {stack.name} from {stack.folder}")
    result = ship.deploy(stack, s, log=log_stderr, destroy_on_failure=destroy_on_failure)
    if fmt == "json":
        print_json(result.document)
    elif result.error is None:
        click.echo(deployed_line(result.document))
    if result.error is not None:
        raise result.error


@click.command()
@ship_options
@click.pass_context
def status(ctx: click.Context, toml_file: str | None, project_dir: str | None, fmt: str,
           **_: object) -> None:  # fmt: skip
    """Stack outputs, whether the model answers, and the hourly cost so far.

    Example: gpuplan status --format json
    """
    from planner.app import ship
    from planner.present.project import status_lines

    _, stack = _stack(ctx, toml_file, project_dir, create=False)
    doc = ship.status(stack)
    if fmt == "json":
        print_json(doc)
    else:
        echo_lines(status_lines(doc))


@click.command()
@ship_options
@click.option("--yes", is_flag=True, help="Destroy without asking (required when not a TTY).")
@click.pass_context
def destroy(ctx: click.Context, toml_file: str | None, project_dir: str | None, fmt: str,
            yes: bool, **_: object) -> None:  # fmt: skip
    """Tear the stack down (the machine and everything the project created).

    Example: gpuplan destroy --yes
    """
    from planner.app import ship

    _, stack = _stack(ctx, toml_file, project_dir, create=False)
    confirm_or_refuse(yes, f"destroy stack {stack.name} of {stack.folder}")
    doc = ship.destroy(stack, log_stderr)
    if fmt == "json":
        print_json(doc)
    else:
        click.echo(f"destroyed stack {stack.name}")
