"""What every command shares: output, options built from the settings table, the settings merge
from what was given on the command line, and confirmation."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from planner.errors import UsageError
from planner.settings import KEYS, Settings, default_of, load_settings, named_source

F = Callable[..., Any]
# List settings given as comma lists on the command line (others, such as --allow-cidr or
# --extra-vllm-arg, repeat the flag: a vLLM argument may hold a comma).
COMMA_LISTS = ("providers", "regions")


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange, which lets nan through (every comparison with it is false, so a nan
    bound or threshold silently turned its filter off) and inf where no upper bound is set."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


class ReaderGone:
    """Standard output that outlives its reader (`gpuplan check | head -1`): once a write or a
    flush finds the pipe closed, the rest goes to /dev/null and the command runs to its own end
    and exit code (check's 6 for drift), where the broken pipe had cut it short with "cannot
    use: Broken pipe", exit 2. What the reader read is its answer. Everything else is the
    stream's own (click and rich ask it for isatty, encoding, fileno...)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _gone(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())  # the interpreter's last flush is quiet too
        os.close(devnull)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()


def guard_output(name: str) -> Any:
    """Puts ReaderGone in front of sys.<name> (stdout, or stderr: `2>&1 | head -1` closes
    both); returns what to put back (None: nothing done)."""
    stream = getattr(sys, name)
    if stream is None or isinstance(stream, ReaderGone) or not hasattr(stream, "fileno"):
        return None
    try:
        stream.fileno()
    except (OSError, ValueError):  # not a real file (a test runner's buffer)
        return None
    setattr(sys, name, ReaderGone(stream))
    return stream


def print_rich(*renderables: Any, width: int | None = None) -> None:
    from rich.console import Console

    console = Console(soft_wrap=False, width=width or max(170, _terminal_width()))
    for r in renderables:
        console.print(r)


def _terminal_width() -> int:
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, AttributeError, ValueError):  # not a terminal, closed, or replaced
        return 120


def terminal_width() -> int | None:
    """The terminal's width for tables that fit it; None (every column) when output is not a
    terminal and COLUMNS is unset: a pipe or a file gets the full table."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, AttributeError, ValueError):  # not a terminal, closed, or replaced
        return None


def echo_lines(lines: list[str], err: bool = False) -> None:
    for line in lines:
        click.echo(line, err=err)


def log_stderr(line: str) -> None:
    click.echo(line.rstrip("\n"), err=True)


def setting_option(key: str, *decls: str, help: str | None = None, **kw: Any) -> Callable[[F], F]:
    """A click option for a settings key: its default and help come from the settings table
    (shown in --help); its value is validated by the settings merge, whatever its source."""
    k = KEYS[key]
    decls = decls or (f"--{key.replace('_', '-')}",)
    if k.type is bool:
        kw.setdefault("default", default_of(key))
    elif k.type is list:
        kw.setdefault("default", None)
        if key in COMMA_LISTS:  # repeated, each a comma list: --provider aws --provider gcp
            kw.setdefault("multiple", True)
    else:
        kw.setdefault("default", default_of(key))
        kw.setdefault(
            "type", click.Choice(k.choices) if k.choices else {int: int, float: float}.get(k.type)
        )
    kw.setdefault("show_default", kw["default"] is not None)
    return click.option(*decls, key, help=help or k.help[:1].upper() + k.help[1:] + ".", **kw)


def toml_option(f: F) -> F:
    return click.option(
        "--toml",
        "toml_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Settings file (default: ./gpuplan.toml when present).",
    )(f)


def settings(ctx: click.Context, toml: str | None = None, **extra: Any) -> Settings:
    """The merged settings of this command: only values given on the command line count as
    flags (defaults shown in --help never override GPUPLAN_* or gpuplan.toml)."""
    flags: dict[str, Any] = {}
    for name, value in {**ctx.params, **extra}.items():
        if name not in KEYS:
            continue
        source = ctx.get_parameter_source(name) if name in ctx.params else None
        if name in ctx.params and source != click.core.ParameterSource.COMMANDLINE:
            continue
        if KEYS[name].type is list and isinstance(value, str):
            value = [v for v in value.split(",")]
        elif name in COMMA_LISTS and isinstance(value, tuple):
            value = [v for part in value for v in part.split(",")]
        flags[name] = value
    s = load_settings(flags, toml)
    # for the error boundary: an error that names a flag (`--tp 3: ...`) whose value came from
    # GPUPLAN_TP or gpuplan.toml says so (planner.cli.__init__._said_sources)
    if isinstance(ctx.obj, dict):
        ctx.obj["sources"] = {
            opt: where
            for p in ctx.command.params
            if p.name in KEYS and (where := named_source(s, p.name))
            for opt in p.opts
            if opt.startswith("--")
        }
    from planner.present.project import settings_note

    note = settings_note(s)
    if note:
        click.echo(note, err=True)
    return s


def confirm_or_refuse(yes: bool, action: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"refusing to {action} without --yes when not run interactively",
            f"add --yes (e.g. in CI) to {action}",
        )
    if not click.confirm(f"{action}?", default=False):
        raise click.Abort()


def format_option(*choices: str, default: str = "table") -> Callable[[F], F]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=default,
        show_default=True,
        help="Output format (json: every detail, for scripts).",
    )


# The workload and constraint options recommend and generate share (one list: they cannot
# drift apart). Their defaults and help come from planner.settings.
PLANNING_OPTIONS: list[Callable[[F], F]] = [
    toml_option,
    click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=True),
        help="A local config.json (or its folder) instead of a model id.",
    ),
    setting_option("revision"),
    setting_option(
        "quant",
        help="Format to plan: auto (native, FP8 and known int4/FP8/FP4 checkpoints), "
        "bf16, fp8, awq, ... Default: the checkpoint's own.",
    ),
    setting_option("context"),
    setting_option("concurrency"),
    setting_option("workload"),
    setting_option("job_requests"),
    setting_option("prompt_tokens"),
    setting_option("output_tokens"),
    setting_option("kv_cache_dtype"),
    setting_option("gpu_memory_utilization"),
    setting_option("objective"),
    setting_option("providers", "--providers", "--provider", help="Comma-separated providers."),
    setting_option("regions", "--regions", "--region", help="Comma-separated region substrings."),
    setting_option("gpu"),
    setting_option("instance_type"),
    setting_option("gpus"),
    setting_option("tp"),
    setting_option("spot", "--spot/--on-demand"),
    setting_option("max_price"),
    setting_option("min_tokens_per_s"),
    setting_option("max_ttft"),
    setting_option("horizon_months"),
    setting_option("max_nodes"),
    setting_option("target_rps"),
    setting_option("target_output_tokens_per_s"),
    setting_option("deadline_hours"),
    setting_option("replica_headroom"),
    setting_option("max_replicas"),
    setting_option("spread", "--spread/--one-machine"),
    click.option("--from-hub", is_flag=True, help="Fetch the config from the Hugging Face Hub."),
]


def planning_options(f: F) -> F:
    for option in reversed(PLANNING_OPTIONS):
        f = option(f)
    return f
