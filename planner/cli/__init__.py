"""The command line: parse, call one use case (planner.app), render (planner.present).

Nothing below the CLI prints or exits. Commands live in one module per topic: model, offers,
plan, project, ship; this module holds the group and the one error boundary.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
import threading
from typing import Any, NoReturn

import click

from planner.cli.common import guard_output
from planner.errors import EXIT_INTERRUPTED, GpuplanError, Terminated, local_file_error

_OUTPUT_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# click 8.2 raises this for a group given no command (its help, exit 2); click 8.1, which
# pyproject allows, has no such class (and prints the help itself): then nothing to catch.
_NO_ARGS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _fail(ctx: click.Context, message: str, hint: str | None, code: int) -> NoReturn:
    """One error line, its hint, and the exit code."""
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    ctx.exit(code)


def _usage(ctx: click.Context, exc: click.UsageError) -> NoReturn:
    """Click's own usage errors (a bad choice, an unknown option), as every other bad input."""
    command = exc.ctx.command_path if exc.ctx else ctx.command_path
    message = exc.format_message()
    # click's wording; "unexpected" is kept for gpuplan's own faults (exit 1)
    message = message.replace("Got unexpected extra argument", "extra argument", 1)
    _fail(ctx, message, f"see `{command} --help`", 2)


def _said_sources(ctx: click.Context, message: str) -> str:
    """``message`` with where each flag it names got its value, when that was not the command
    line: '--tp 3: ... (--tp came from GPUPLAN_TP)'. The layers below name settings by their
    flag; the settings merge knows the source (stored by planner.cli.common.settings)."""
    sources = ctx.obj.get("sources", {}) if isinstance(ctx.obj, dict) else {}
    said = [
        f"{flag} came from {where}"
        for flag, where in sources.items()
        # a vLLM flag given in --extra-vllm-arg shares gpuplan's spelling: not that setting
        if re.search(rf"(?<![\w-])(?<!--extra-vllm-arg ){re.escape(flag)}(?![\w-])", message)
    ]
    return f"{message} ({'; '.join(said)})" if said else message


def _os_error(ctx: click.Context, exc: OSError) -> NoReturn:
    """An ordinary fault of this machine (permissions, full disk, a name too long) that a lower
    layer did not already turn into a message: still one line, exit 2."""
    if exc.filename is None and exc.errno in _OUTPUT_FULL:
        # every file gpuplan writes names itself: this is its output (`> /dev/full`)
        reason = local_file_error(exc).message.split(": ", 1)[-1]
        _fail(ctx, f"cannot write the output: {reason}", "redirect it where there is room", 2)
    error = local_file_error(exc)
    _fail(ctx, error.message, error.hint, error.exit_code)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise Terminated


def _sigterm_as_interrupt() -> Any:
    """SIGTERM (a cancelled CI job, a stopped container) takes Ctrl-C's path: one line and exit
    130 rather than a silent death (exit 143). Returns the handler to put back; a SIGTERM the
    parent chose to ignore stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    return previous


class GpuplanGroup(click.Group):
    """The one error boundary: every GpuplanError becomes one line, a hint and its exit code."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """A reader that stops early (`| head`) is guarded against from the start: --help,
        --version and usage errors are written while click parses, before invoke."""
        guarded = {name: guard_output(name) for name in ("stdout", "stderr")}
        try:
            return super().main(*args, **kwargs)
        finally:
            for name, stream in guarded.items():
                if stream is not None:
                    setattr(sys, name, stream)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Options of gpuplan itself: a bad one is one line too, exit 2 (no arguments still
        show the help)."""
        if sys.stdout is None:  # started with standard output closed (`>&-`): every result lost,
            # --help's and --version's too (checked before click runs them)
            _fail(ctx, "standard output is closed", "redirect it to a file or to /dev/null", 2)
        try:
            return super().parse_args(ctx, args)
        except _NO_ARGS_HELP:
            raise
        except click.UsageError as exc:
            _usage(ctx, exc)
        except OSError as exc:  # `gpuplan --help > /dev/full`: click writes the help (or the
            # version) while it parses, before invoke's boundary
            _os_error(ctx, exc)

    def invoke(self, ctx: click.Context) -> Any:
        previous_sigterm = _sigterm_as_interrupt()
        try:
            return super().invoke(ctx)
        except GpuplanError as exc:
            for warning in exc.warnings:
                click.echo(f"warning: {warning}", err=True)
            _fail(ctx, _said_sources(ctx, exc.message), exc.hint, exc.exit_code)
        except KeyboardInterrupt:
            sub = ctx.invoked_subcommand
            note = (
                " (any stack state stays with Pulumi: `pulumi cancel` if an update is stuck)"
                if sub in {"deploy", "destroy"}
                else ""
            )
            click.echo(f"interrupted{note}", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except OSError as exc:
            _os_error(ctx, exc)
        except _NO_ARGS_HELP:  # `gpuplan catalog` alone: its help
            raise
        except click.UsageError as exc:  # a bad flag or value of a command
            _usage(ctx, exc)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            hint = "rerun with --debug for the traceback, and report it"
            _fail(ctx, f"unexpected {type(exc).__name__}: {first}", hint, 1)
        finally:
            if previous_sigterm is not None:
                signal.signal(signal.SIGTERM, previous_sigterm)


@click.group(cls=GpuplanGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for unexpected errors.")
@click.version_option(package_name="gpuplan")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """gpuplan: which GPU, on which cloud, costs least to serve an open LLM with vLLM.

    Example: gpuplan footprint llama-3.1-8b --context 8192
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug or os.environ.get("GPUPLAN_DEBUG") == "1"


def _register() -> None:
    from planner.cli import model, offers, plan, project, ship

    for command in (
        model.footprint, model.models, offers.gpus, offers.offers, offers.catalog,
        plan.recommend, project.generate, project.init, project.check,
        ship.deploy, ship.status, ship.destroy,
    ):  # fmt: skip
        main.add_command(command)


_register()

if __name__ == "__main__":
    main()
