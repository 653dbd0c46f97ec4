"""Commands about a model: footprint, models."""

from __future__ import annotations

import click

from planner.cli.common import format_option, print_json, print_rich, setting_option, settings


@click.command()
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
@setting_option(
    "quant",
    help="Quantization format (bf16, fp8, awq, gptq, nvfp4, mxfp4, q4_k_m, ...). "
    "Default: the checkpoint's own.",
)
@setting_option("context", help="Tokens per request (prompt + output).")
@setting_option("concurrency", help="Requests held in the KV cache at once.")
@setting_option("kv_cache_dtype")
@setting_option("gpu_memory_utilization")
@click.option(
    "--from-hub",
    is_flag=True,
    help="Fetch the config from the Hugging Face Hub even when the registry has the model.",
)
@setting_option("revision")
@format_option("table", "json")
@click.pass_context
def footprint(
    ctx: click.Context,
    config_path: str | None,
    gguf_path: str | None,
    from_hub: bool,
    fmt: str,
    **_: object,
) -> None:
    """Exact parameters, weight bytes and KV cache of MODEL, and per-GPU memory for TP 1-8.

    MODEL is a registry name or alias (llama-3.1-70b), a Hugging Face id, a local folder with
    config.json, or a .gguf file.

    Example: gpuplan footprint llama-3.1-70b --quant fp8 --context 32768 --concurrency 8
    """
    from planner.app.model import footprint as run
    from planner.present.report import footprint_tables, footprint_to_dict

    fp = run(
        settings(ctx),
        config_path=config_path,
        gguf_path=gguf_path,
        from_hub=from_hub,
    )
    if fmt == "json":
        print_json(footprint_to_dict(fp))
    else:
        print_rich(*footprint_tables(fp))


@click.command()
@format_option("table", "json")
def models(fmt: str) -> None:
    """List the embedded model registry (works offline).

    Example: gpuplan models --format json
    """
    from planner.app.model import registry_models
    from planner.present.report import models_table

    rows = registry_models()
    if fmt == "json":
        print_json(rows)
    else:
        print_rich(models_table(rows))
