"""Commands about the generated project: generate, init, check."""

from __future__ import annotations

import click

from planner.cli.common import (
    FiniteFloatRange,
    echo_lines,
    planning_options,
    setting_option,
    settings,
    toml_option,
)
from planner.settings import default_of


@click.command()
@click.argument("model", required=False)
@planning_options
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False),
    help="Generate from a saved plan (gpuplan recommend --save-plan) instead of MODEL.",
)
@setting_option(
    "out",
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for the Pulumi project (new, empty, or an earlier output); default: "
    "[deploy].out of gpuplan.toml.",
)
@setting_option("stack", default=None, help="Pulumi stack (default: gpuplan.toml's, or dev).")
@setting_option(
    "allow_cidrs",
    "--allow-cidr",
    multiple=True,
    help="Network allowed to reach the serving port (repeatable).",
)
@setting_option(
    "ssh_key",
    type=click.Path(dir_okay=False),
    help="OpenSSH public key file to log in with (port 22 opens only with --ssh-cidr).",
)
@setting_option(
    "ssh_cidr",
    help="Network allowed to reach port 22; without it SSH is closed (with it but no "
    "--ssh-key: log in with OS Login on GCP or EC2 Instance Connect on AWS).",
)
@setting_option("network")
@setting_option("subnets", "--subnet", multiple=True, help="A subnet of --network (repeatable).")
@setting_option("disk_gb")
@setting_option("image")
@setting_option(
    "extra_vllm_args", "--extra-vllm-arg", multiple=True, help="Appended to `vllm serve`."
)
@setting_option("tls_certificate")
@setting_option("tls_domain")
@setting_option("allow_open_port", "--allow-open-port", is_flag=True)
@setting_option("allow_guessed_model", "--allow-guessed-model", is_flag=True)
@setting_option("allow_remote_code", "--allow-remote-code", is_flag=True)
@click.option(
    "--old-stack-destroyed",
    is_flag=True,
    help="Regenerate a folder for another provider: you destroyed the old stack first.",
)
@click.pass_context
def generate(
    ctx: click.Context,
    toml_file: str | None,
    config_path: str | None,
    from_hub: bool,
    plan_file: str | None,
    old_stack_destroyed: bool,
    **_: object,
) -> None:
    """Write a Pulumi (Python) project that provisions the plan's machine and serves the model.

    Without MODEL or --plan, plans from ./gpuplan.toml and writes to its [deploy].out. Settings
    come from flags > GPUPLAN_<KEY> > gpuplan.toml > defaults, as for every command.

    Example: gpuplan generate llama-3.1-8b --providers aws --allow-cidr 203.0.113.7/32 --out llm
    """
    from planner.app.project import generate as run
    from planner.present.project import generated_lines, skipped_lines

    gen = run(
        settings(ctx, toml_file),
        plan_file=plan_file,
        config_path=config_path,
        from_hub=from_hub,
        old_stack_destroyed=old_stack_destroyed,
    )
    echo_lines(skipped_lines(gen.skipped), err=True)
    echo_lines([f"warning: {w}" for w in gen.warnings], err=True)
    echo_lines(generated_lines(gen))


@click.command()
@click.option("--model", default="llama-3.1-8b", show_default=True, help="The model to serve.")
@click.option(
    "--allow-cidr",
    "allow_cidrs",
    multiple=True,
    help="Network allowed to reach the serving port (repeatable).",
)
@click.option("--providers", default=None, help="Comma-separated providers to consider.")
@click.option("--stack", default=default_of("stack"), show_default=True)
@click.option(
    "--out",
    "out_dir",
    default=default_of("out"),
    show_default=True,
    help="Where `gpuplan generate` will write the Pulumi project.",
)
@click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="Repository root.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing gpuplan.toml / workflow.")
@click.option(
    "--ci-install",
    default=None,
    help="What CI pip-installs, e.g. 'gpuplan @ git+https://github.com/ORG/gpuplan@COMMIT' "
    "(default: the gpuplan you run, when it came from an index or a repository).",
)
def init(
    model: str,
    allow_cidrs: tuple[str, ...],
    providers: str | None,
    stack: str,
    out_dir: str,
    root: str,
    force: bool,
    ci_install: str | None,
) -> None:
    """Write a commented gpuplan.toml and the GitHub Actions workflow that checks pull requests
    and deploys main.

    Example: gpuplan init --model llama-3.1-70b --allow-cidr 203.0.113.0/24 --providers aws
    """
    from planner.app.project import init_repo

    written = init_repo(
        model=model,
        allow_cidrs=allow_cidrs,
        providers=providers,
        stack=stack,
        out=out_dir,
        root=root,
        force=force,
        ci_install=ci_install,
    )
    echo_lines([f"wrote {path}" for path in written])
    cidrs = "" if allow_cidrs else " (set allow_cidrs: who may reach the endpoint)"
    click.echo(
        f"next: edit gpuplan.toml{cidrs}, run `gpuplan generate`, commit both, and add the "
        "repository secrets the workflow lists"
    )


@click.command()
@toml_option
@click.option(
    "--prices",
    is_flag=True,
    help="Also say whether a different plan is now cheaper (changes no files).",
)
@click.option(
    "--threshold",
    type=FiniteFloatRange(0, 1),
    default=0.10,
    show_default=True,
    help="With --prices: report when the best plan beats the committed one by more.",
)
@click.pass_context
def check(ctx: click.Context, toml_file: str | None, prices: bool, threshold: float) -> None:
    """Check that the committed project matches the settings (exit 6 when it does not).

    Example: gpuplan check --prices
    """
    from planner.app.project import check as run
    from planner.errors import EXIT_DRIFT
    from planner.present.project import check_lines

    result = run(settings(ctx, toml_file), prices=prices)
    echo_lines(check_lines(result, threshold))
    if not result.clean:
        raise SystemExit(EXIT_DRIFT)
