"""The command line: parse, call, print. Nothing below this module prints or exits."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from planner.errors import EXIT_INTERRUPTED, GpuplanError


class GpuplanGroup(click.Group):
    """The one error boundary: every GpuplanError becomes one line, a hint and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GpuplanError as exc:
            click.echo(f"error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            click.echo(f"error: unexpected {type(exc).__name__}: {first}", err=True)
            click.echo("hint: rerun with --debug for the traceback, and report it", err=True)
            ctx.exit(1)


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


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def _print_rich(renderables: list[Any]) -> None:
    from rich.console import Console

    console = Console(soft_wrap=False, width=max(120, _terminal_width()))
    for r in renderables:
        console.print(r)


def _terminal_width() -> int:
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except OSError:
        return 120


@main.command()
@click.argument("model", required=False)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=True),
    help="A local config.json (or its folder); safetensors index and "
    "hf_quant_config.json beside it are read too.",
)
@click.option(
    "--gguf",
    "gguf_path",
    type=click.Path(dir_okay=False),
    help="A local GGUF file: exact tensor types and bytes from its header.",
)
@click.option(
    "--quant",
    default=None,
    help="Quantization format (bf16, fp8, awq, gptq, nvfp4, "
    "mxfp4, q4_k_m, ...). Default: the checkpoint's own.",
)
@click.option(
    "--context",
    type=click.IntRange(min=1),
    default=8192,
    show_default=True,
    help="Tokens per request (prompt + output).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Requests held in the KV cache at once.",
)
@click.option(
    "--kv-cache-dtype", type=click.Choice(["auto", "fp8"]), default="auto", show_default=True
)
@click.option(
    "--gpu-memory-utilization",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.92,
    show_default=True,
    help="vLLM's share of each GPU's memory.",
)
@click.option(
    "--from-hub",
    is_flag=True,
    help="Fetch the config from the Hugging Face Hub even when the registry has the model.",
)
@click.option("--revision", default=None, help="Hub revision (branch, tag or commit).")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def footprint(
    model: str | None,
    config_path: str | None,
    gguf_path: str | None,
    quant: str | None,
    context: int,
    concurrency: int,
    kv_cache_dtype: str,
    gpu_memory_utilization: float,
    from_hub: bool,
    revision: str | None,
    fmt: str,
) -> None:
    """Exact parameters, weight bytes and KV cache of MODEL, and per-GPU memory for TP 1-8.

    MODEL is a registry name or alias (llama-3.1-70b), a Hugging Face id, a local folder with
    config.json, or a .gguf file.

    Example: gpuplan footprint llama-3.1-70b --quant fp8 --context 32768 --concurrency 8
    """
    from planner.footprint import estimate_footprint
    from planner.modelspec import load_model_spec
    from planner.report import footprint_tables, footprint_to_dict

    spec = load_model_spec(
        model, config_path=config_path, gguf_path=gguf_path, from_hub=from_hub, revision=revision
    )
    fp = estimate_footprint(
        spec,
        quant,
        context=context,
        concurrency=concurrency,
        kv_cache_dtype=kv_cache_dtype,
        gpu_memory_utilization=gpu_memory_utilization,
    )
    if fmt == "json":
        _print_json(footprint_to_dict(fp))
    else:
        _print_rich(footprint_tables(fp))


@main.command()
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def models(fmt: str) -> None:
    """List the embedded model registry (works offline).

    Example: gpuplan models --format json
    """
    from planner.modelspec import registry_entries

    rows = [
        {
            "id": e["id"],
            "aliases": e.get("aliases", []),
            "parameters": (e.get("published") or {}).get("parameter_count"),
            "quantization": (e["config"].get("quantization_config") or {}).get("quant_method")
            or ((e.get("hf_quant_config") or {}).get("quantization") or {}).get("quant_algo"),
            "config_source": e["config_source"],
        }
        for e in registry_entries()
    ]
    if fmt == "json":
        _print_json(rows)
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} models in the embedded registry", title_justify="left")
    for col in ("id", "aliases", "published params", "quantization"):
        table.add_column(col)
    for r in rows:
        params = f"{r['parameters'] / 1e9:.2f}B" if r["parameters"] else "-"
        table.add_row(r["id"], ", ".join(r["aliases"]), params, r["quantization"] or "-")
    _print_rich([table])


@main.command()
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def gpus(fmt: str) -> None:
    """List the canonical GPU table with the aliases providers use.

    Example: gpuplan gpus --format json
    """
    from dataclasses import asdict

    from planner.gpus import gpu_table

    table_rows = list(gpu_table().values())
    if fmt == "json":
        _print_json([asdict(g) for g in table_rows])
        return
    from rich.table import Table

    table = Table(title=f"{len(table_rows)} GPUs", title_justify="left")
    for col in ("id", "memory GB", "bandwidth GB/s", "BF16 TFLOPS", "FP8 TFLOPS", "CC", "aliases"):
        table.add_column(col)
    for g in table_rows:
        table.add_row(
            g.id,
            f"{g.memory_gb:g}",
            f"{g.memory_bandwidth_gb_s:g}",
            f"{g.bf16_tflops_dense or '-'}",
            f"{g.fp8_tflops_dense or '-'}",
            f"{g.compute_capability or '-'}",
            ", ".join(g.aliases),
        )
    _print_rich([table])
