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
            click.echo(
                "interrupted (any stack state stays with Pulumi: `pulumi cancel` if an "
                "update is stuck)",
                err=True,
            )
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

    console = Console(soft_wrap=False, width=max(170, _terminal_width()))
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
    from planner.model.footprint import estimate_footprint
    from planner.model.sources import load_model_spec
    from planner.present.report import footprint_tables, footprint_to_dict

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
    from planner.model.sources import registry_entries

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

    from planner.offers.gpus import gpu_table

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


def _age_label(fetched_at: str | None) -> str:
    from planner.offers.catalog import STALE_AFTER_DAYS, age_days

    age = age_days(fetched_at)
    if age is None:
        return "unknown"
    label = f"{age:.0f}d" if age >= 1 else f"{age * 24:.0f}h"
    return label + (" STALE" if age > STALE_AFTER_DAYS else "")


@main.command()
@click.option("--gpu", default=None, help="Canonical GPU name or a provider alias (H100, a10g).")
@click.option("--provider", "providers", default=None, help="Comma-separated: aws,gcp,...")
@click.option("--region", default=None, help="Substring of the region or location.")
@click.option(
    "--min-gpu-memory",
    type=click.FloatRange(min=0),
    default=None,
    help="Minimum memory per GPU, in GB as marketed.",
)
@click.option("--gpus", type=click.IntRange(min=1), default=None, help="Exact GPU count.")
@click.option("--max-price", type=click.FloatRange(min=0), default=None, help="USD per hour.")
@click.option("--spot/--on-demand", default=False, show_default=True)
@click.option(
    "--horizon-months",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Months of 24x7 use over which monthly rentals spread their setup fee (Hetzner).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most N rows.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
def offers(
    gpu: str | None,
    providers: str | None,
    region: str | None,
    min_gpu_memory: float | None,
    gpus: int | None,
    max_price: float | None,
    spot: bool,
    horizon_months: float,
    limit: int | None,
    fmt: str,
) -> None:
    """GPU offers from the catalog (cache, else the embedded snapshot), cheapest first.

    Example: gpuplan offers --gpu H100 --gpus 8 --spot
    """
    from planner.offers.catalog import OfferFilter, filter_offers, load_catalog
    from planner.offers.providers import parse_provider_list

    names = parse_provider_list(providers)
    catalog = load_catalog(names)
    rows = filter_offers(
        catalog.offers,
        OfferFilter(
            gpu=gpu,
            providers=tuple(names),
            region=region,
            min_gpu_memory_gb=min_gpu_memory,
            gpus=gpus,
            max_price_usd_per_hour=max_price,
            spot=spot,
            horizon_months=horizon_months,
        ),
    )
    if limit:
        rows = rows[:limit]
    for w in catalog.warnings:
        click.echo(f"warning: {w}", err=True)
    if fmt in ("json", "csv"):
        from planner.offers.catalog import age_days, offer_to_dict

        records = [
            {
                **offer_to_dict(o),
                "ranked_price_usd_per_hour": round(p, 4),
                "age_days": round(age_days(o.fetched_at) or 0, 1),
            }
            for o, p in rows
        ]
        if fmt == "json":
            _print_json(
                {
                    "schema": "gpuplan.offers-list/1",
                    "spot": spot,
                    "horizon_months": horizon_months,
                    "offers": records,
                }
            )
        else:
            import csv

            cols = [
                "provider",
                "instance_type",
                "region",
                "gpu",
                "gpu_count",
                "gpu_memory_gb",
                "vcpus",
                "ram_gib",
                "price_usd_per_hour",
                "spot_price_usd_per_hour",
                "billing",
                "monthly_price_usd",
                "setup_fee_usd",
                "ranked_price_usd_per_hour",
                "fetched_at",
                "age_days",
                "source",
            ]
            writer = csv.DictWriter(
                sys.stdout, fieldnames=cols, extrasaction="ignore", lineterminator="\n"
            )
            writer.writeheader()
            writer.writerows(records)
        return
    from rich.table import Table

    kind = "spot" if spot else "on-demand"
    table = Table(title=f"{len(rows)} offers, {kind} $/h ascending", title_justify="left")
    for col in (
        "provider",
        "instance",
        "region",
        "GPUs",
        "GB/GPU",
        "$/h",
        "$/GPU·h",
        "billing",
        "price age",
    ):
        table.add_column(
            col, justify="right" if col in {"GPUs", "GB/GPU", "$/h", "$/GPU·h"} else "left"
        )
    for o, price in rows:
        billing = o.billing
        if o.billing == "monthly":
            billing = f"${o.monthly_price_usd:,.0f}/mo + ${o.setup_fee_usd or 0:,.0f} setup"
        table.add_row(
            o.provider,
            o.instance_type,
            o.region[:28],
            f"{o.gpu_count}x {o.gpu}",
            f"{o.gpu_memory_gb:g}",
            f"{price:.3f}",
            f"{price / o.gpu_count:.3f}",
            billing,
            _age_label(o.fetched_at),
        )
    _print_rich([table])


@main.group()
def catalog() -> None:
    """The offer catalog: `catalog status`, `catalog refresh`."""


@catalog.command("status")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def catalog_status(fmt: str) -> None:
    """Where each provider's offers come from, how old they are, and how many.

    Example: gpuplan catalog status
    """
    from dataclasses import asdict

    from planner.offers.catalog import load_catalog

    cat = load_catalog()
    for w in cat.warnings:
        click.echo(f"warning: {w}", err=True)
    if fmt == "json":
        _print_json(
            {
                "schema": "gpuplan.catalog-status/1",
                "providers": [asdict(s) for s in cat.sources.values()],
            }
        )
        return
    from rich.table import Table

    table = Table(title="Offer catalog", title_justify="left")
    for col in ("provider", "source", "fetched at", "age", "offers"):
        table.add_column(col)
    for s in cat.sources.values():
        table.add_row(
            s.provider, s.origin, s.fetched_at or "-", _age_label(s.fetched_at), str(s.offers)
        )
    _print_rich([table])


@catalog.command("refresh")
@click.option(
    "--provider",
    "providers",
    default=None,
    help="Comma-separated providers (default: all with credentials).",
)
@click.option("--region", "regions", multiple=True, help="Limit to these regions (repeatable).")
def catalog_refresh(providers: str | None, regions: tuple[str, ...]) -> None:
    """Fetch live offers from the providers' APIs into the user cache, in parallel.

    Providers without credentials are skipped with a warning unless named with --provider.
    Exit code 4 when the one named provider, or every provider, failed.

    Example: gpuplan catalog refresh --provider aws,runpod
    """
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from planner.errors import ProviderError
    from planner.offers.catalog import refresh
    from planner.offers.providers import parse_provider_list

    names = parse_provider_list(providers)
    err_console = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"refreshing {', '.join(names)}", total=len(names))
        outcomes = refresh(
            names,
            explicit=providers is not None,
            regions=regions or None,
            on_done=lambda _o: progress.advance(task),
        )
    for o in outcomes:
        line = f"{o.provider:8} {o.status:8} {o.offers:5d} offers  {o.seconds:6.1f}s"
        click.echo(line + (f"  {o.message}" if o.message else ""))
        for w in o.warnings:
            click.echo(f"{'':8} warning: {w}")
    ok = [o for o in outcomes if o.status == "ok"]
    failed = [o for o in outcomes if o.status == "failed"]
    if (providers is not None and len(names) == 1 and failed) or not ok:
        skipped = sum(o.status == "skipped" for o in outcomes)
        raise ProviderError(
            f"catalog refresh failed: {len(failed)} failed, {skipped} skipped without "
            "credentials, none refreshed"
            if not ok
            else f"catalog refresh of {names[0]} failed",
            "cached and embedded offers are unchanged; `gpuplan catalog status` shows their age",
        )


_PLANNING_OPTIONS = [
    click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=True),
        help="A local config.json (or its folder) instead of a model id.",
    ),
    click.option(
        "--quant",
        default=None,
        help="Format to plan: auto (native, FP8 and known int4/FP8/FP4 checkpoints), "
        "bf16, fp8, awq, ... Default: the checkpoint's own.",
    ),
    click.option(
        "--context",
        type=click.IntRange(min=1),
        default=8192,
        show_default=True,
        help="--max-model-len: the longest request, in tokens.",
    ),
    click.option(
        "--concurrency",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Requests of --context tokens that must fit at once.",
    ),
    click.option(
        "--prompt-tokens",
        type=click.IntRange(min=1),
        default=1000,
        show_default=True,
        help="Typical prompt, for speed and cost per token.",
    ),
    click.option("--output-tokens", type=click.IntRange(min=1), default=250, show_default=True),
    click.option(
        "--kv-cache-dtype", type=click.Choice(["auto", "fp8"]), default="auto", show_default=True
    ),
    click.option(
        "--gpu-memory-utilization",
        type=click.FloatRange(0, 1, min_open=True),
        default=0.92,
        show_default=True,
    ),
    click.option(
        "--objective",
        type=click.Choice(["cost-per-token", "cost", "speed", "latency"]),
        default="cost-per-token",
        show_default=True,
    ),
    click.option(
        "--providers", "--provider", "providers", default=None, help="Comma-separated providers."
    ),
    click.option(
        "--regions",
        "--region",
        "regions",
        default=None,
        help="Comma-separated substrings of regions.",
    ),
    click.option("--gpu", default=None, help="Only this GPU (canonical name or alias)."),
    click.option("--instance-type", default=None, help="Only this instance type."),
    click.option("--spot/--on-demand", default=False, show_default=True),
    click.option(
        "--max-price",
        type=click.FloatRange(min=0),
        default=None,
        help="USD per hour for the whole deployment.",
    ),
    click.option(
        "--min-tokens-per-s",
        type=click.FloatRange(min=0),
        default=None,
        help="Decode speed each stream must see at --concurrency.",
    ),
    click.option(
        "--max-ttft",
        type=click.FloatRange(min=0),
        default=None,
        help="Time to first token, ms, for --prompt-tokens.",
    ),
    click.option(
        "--horizon-months",
        type=click.FloatRange(min=0, min_open=True),
        default=1.0,
        show_default=True,
        help="Spread monthly rentals' setup fees over this long.",
    ),
    click.option(
        "--max-nodes",
        type=click.IntRange(min=1, max=16),
        default=4,
        show_default=True,
        help="Pipeline-parallel nodes allowed when one machine cannot hold the model.",
    ),
    click.option(
        "--target-rps",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Requests a second to serve (x --output-tokens): sizes replicas.",
    ),
    click.option(
        "--target-output-tokens-per-s",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Output tokens a second to serve: sizes replicas.",
    ),
    click.option(
        "--replica-headroom",
        type=click.FloatRange(min=0),
        default=0.2,
        show_default=True,
        help="Spare capacity above the target (0.2 = 20%).",
    ),
    click.option("--max-replicas", type=click.IntRange(min=1), default=64, show_default=True),
    click.option("--from-hub", is_flag=True, help="Fetch the config from the Hugging Face Hub."),
]


def planning_options(f: Any) -> Any:
    """The options recommend and generate share (one list, so they cannot drift apart)."""
    for option in reversed(_PLANNING_OPTIONS):
        f = option(f)
    return f


def _target(p: dict[str, Any]) -> float | None:
    from planner.errors import UsageError

    rps, tokens = p.get("target_rps"), p.get("target_output_tokens_per_s")
    if rps and tokens:
        raise UsageError("give --target-rps or --target-output-tokens-per-s, not both")
    return rps * p["output_tokens"] if rps else tokens


def _rank(model: str | None, p: dict[str, Any]) -> tuple[Any, Any]:
    """Plan MODEL against the catalog with the shared planning options."""
    from planner.decide.plan import Need
    from planner.decide.rank import candidates_for
    from planner.decide.rank import recommend as rank
    from planner.model.sources import load_model_spec
    from planner.offers.catalog import OfferFilter, filter_offers, load_catalog
    from planner.offers.providers import parse_provider_list

    spec = load_model_spec(model, config_path=p["config_path"], from_hub=p["from_hub"])
    need = Need(
        context=p["context"],
        concurrency=p["concurrency"],
        prompt_tokens=p["prompt_tokens"],
        output_tokens=p["output_tokens"],
        kv_cache_dtype=p["kv_cache_dtype"],
        gpu_memory_utilization=p["gpu_memory_utilization"],
        objective=p["objective"],
        spot=p["spot"],
        max_price_usd_per_hour=p["max_price"],
        min_tokens_per_s=p["min_tokens_per_s"],
        max_ttft_ms=p["max_ttft"],
        horizon_months=p["horizon_months"],
        max_nodes=p["max_nodes"],
        target_output_tokens_per_s=_target(p),
        replica_headroom=p["replica_headroom"],
        max_replicas=p["max_replicas"],
    )
    candidates = candidates_for(spec, p["quant"])
    names = parse_provider_list(p["providers"])
    catalog = load_catalog(names)
    for w in catalog.warnings:
        click.echo(f"warning: {w}", err=True)
    offers = [
        o
        for o, _ in filter_offers(
            catalog.offers, OfferFilter(gpu=p["gpu"], providers=tuple(names), spot=p["spot"])
        )
    ]
    if p["regions"]:
        wanted = [r.strip().lower() for r in p["regions"].split(",") if r.strip()]
        offers = [o for o in offers if any(w in o.region.lower() for w in wanted)]
    if p["instance_type"]:
        offers = [o for o in offers if o.instance_type == p["instance_type"]]
    return rank(candidates, offers, need), catalog


@main.command()
@click.argument("model", required=False)
@planning_options
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True)
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
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def recommend(
    model: str | None,
    top: int,
    explain: bool,
    plot_path: str | None,
    plan_path: str | None,
    fmt: str,
    **planning: Any,
) -> None:
    """Rank GPU offers that will run MODEL with vLLM, by cost per token (or --objective).

    Example: gpuplan recommend llama-3.1-70b --quant auto --context 16384 --concurrency 8
    """
    from pathlib import Path

    from planner.decide.plan import plan_to_json
    from planner.present.report import recommendation_tables, recommendation_to_dict

    ranking, catalog = _rank(model, planning)
    if plan_path:
        from planner.fsutil import atomic_write_text

        atomic_write_text(Path(plan_path), plan_to_json(ranking.plans[0]))
    if plot_path:
        from planner.present.plot import write_plot

        write_plot(list(ranking.plans), Path(plot_path))
    if fmt == "json":
        _print_json(recommendation_to_dict(ranking, top, catalog.sources))
    else:
        _print_rich(recommendation_tables(ranking, top, explain))
        if plan_path:
            click.echo(f"plan written to {plan_path}")


def _first_generatable(plans: Any) -> Any:
    """The best plan gpuplan can write a project for, saying which better ones it skipped."""
    from infra.emit import ProjectOptions, plan_data
    from planner.errors import DeployError

    skipped: list[str] = []
    for plan in plans[:200]:
        try:
            plan_data(plan, ProjectOptions(allowed_cidrs=("127.0.0.1/32",)))
        except DeployError as exc:
            skipped.append(f"{plan.offer.provider} {plan.offer.instance_type}: {exc.message}")
            continue
        for line in skipped[:3]:
            click.echo(f"note: skipped a better plan, {line}", err=True)
        return plan
    raise DeployError(
        "none of the top plans can be generated yet: " + "; ".join(skipped[:3]),
        "pin --providers / --gpu to an offer gpuplan generates for",
    )


@main.command()
@click.argument("model", required=False)
@planning_options
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False),
    help="Generate from a saved plan (gpuplan recommend --save-plan) instead of MODEL.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for the Pulumi project (new, empty, or an earlier output); default: "
    "[deploy].out of gpuplan.toml.",
)
@click.option("--stack", default=None, help="Pulumi stack (default: gpuplan.toml's, or dev).")
@click.option(
    "--toml",
    "toml_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Without MODEL or --plan, plan from this file (default: ./gpuplan.toml).",
)
@click.option(
    "--allow-cidr",
    "allow_cidrs",
    multiple=True,
    help="Network allowed to reach the serving port (repeatable).",
)
@click.option(
    "--ssh-key",
    "ssh_key",
    type=click.Path(dir_okay=False),
    default=None,
    help="OpenSSH public key file; SSH stays closed without it and --ssh-cidr.",
)
@click.option("--ssh-cidr", default=None, help="Network allowed to SSH in.")
def generate(
    model: str | None,
    plan_file: str | None,
    out_dir: str | None,
    stack: str | None,
    toml_file: str | None,
    allow_cidrs: tuple[str, ...],
    ssh_key: str | None,
    ssh_cidr: str | None,
    **planning: Any,
) -> None:
    """Write a Pulumi (Python) project that provisions the plan's machine and serves the model.

    Example: gpuplan generate llama-3.1-8b --providers aws --allow-cidr 203.0.113.7/32 --out llm
    """
    from pathlib import Path

    from infra.emit import ProjectOptions, render_project, write_project
    from planner.decide.plan import plan_from_json
    from planner.errors import UsageError

    if plan_file and model:
        raise UsageError("give MODEL or --plan, not both")
    cfg = _config(toml_file)
    if not plan_file and not model:
        # Everything from gpuplan.toml; flags given on the command line still win.
        if not cfg.model:
            raise UsageError(
                "no MODEL, --plan or gpuplan.toml [model].model",
                "pass a model, or run `gpuplan init` first",
            )
        model = cfg.model
        ctx = click.get_current_context()
        from_toml = _cfg_planning(cfg)
        for name, value in from_toml.items():
            if ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT:
                planning[name] = value
    out_dir = out_dir or (cfg.out if cfg.path else None)
    if not out_dir:
        raise UsageError("no --out folder given", "pass --out DIR (or set [deploy].out)")
    stack = stack or cfg.stack
    allow_cidrs = allow_cidrs or cfg.allow_cidrs
    ssh_cidr = ssh_cidr or cfg.ssh_cidr
    ssh_key = ssh_key or (str(Path(cfg.ssh_key).expanduser()) if cfg.ssh_key else None)
    if plan_file:
        try:
            text = Path(plan_file).read_text("utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read plan file {plan_file}: {exc.strerror}") from None
        plan = plan_from_json(text)
    else:
        ranking, _ = _rank(model, planning)
        plan = _first_generatable(ranking.plans)
    key = None
    if ssh_key:
        try:
            key = Path(ssh_key).read_text("utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read --ssh-key {ssh_key}: {exc.strerror}") from None
    files = render_project(
        plan,
        ProjectOptions(
            stack=stack, allowed_cidrs=allow_cidrs, ssh_cidr=ssh_cidr, ssh_public_key=key
        ),
    )
    written = write_project(files, Path(out_dir))
    o = plan.offer
    click.echo(
        f"wrote {len(written)} files to {out_dir}: {o.provider} {o.instance_type} "
        f"({o.gpu_count}x {o.gpu}) serving {plan.model} at "
        f"${plan.estimate.usd_per_hour:.2f}/h"
    )
    click.echo(f"next: cd {out_dir} && cat README.md")


def _confirm_or_refuse(yes: bool, action: str) -> None:
    from planner.errors import UsageError

    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"refusing to {action} without --yes when not run interactively",
            f"add --yes (e.g. in CI) to {action}",
        )
    if not click.confirm(f"{action}?", default=False):
        raise click.Abort()


def _config(config_file: str | None) -> Any:
    from pathlib import Path

    from planner.errors import UsageError
    from planner.settings import load_config

    if config_file and not Path(config_file).exists():
        raise UsageError(
            f"--toml {config_file} does not exist",
            "run `gpuplan init` to write one, or drop --toml",
        )
    return load_config(config_file or "gpuplan.toml")


@main.command()
@click.option("--model", default="llama-3.1-8b", show_default=True, help="The model to serve.")
@click.option(
    "--allow-cidr",
    "allow_cidrs",
    multiple=True,
    help="Network allowed to reach the serving port (repeatable).",
)
@click.option("--providers", default=None, help="Comma-separated providers to consider.")
@click.option("--stack", default="prod", show_default=True)
@click.option(
    "--out",
    "out_dir",
    default="infra/gpuplan",
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
def init(
    model: str,
    allow_cidrs: tuple[str, ...],
    providers: str | None,
    stack: str,
    out_dir: str,
    root: str,
    force: bool,
) -> None:
    """Write a commented gpuplan.toml and the GitHub Actions workflow that checks pull requests
    and deploys main.

    Example: gpuplan init --model llama-3.1-70b --allow-cidr 203.0.113.0/24 --providers aws
    """
    from importlib.metadata import version
    from pathlib import Path

    from infra.render import render
    from planner.errors import UsageError
    from planner.fsutil import atomic_write_text
    from planner.offers.providers import parse_provider_list
    from planner.settings import config_template

    names = parse_provider_list(providers) if providers else None
    base = Path(root)
    toml_text = (
        config_template(model, list(allow_cidrs), names)
        .replace('stack = "prod"', f"stack = {json.dumps(stack)}")
        .replace('out = "infra/gpuplan"', f"out = {json.dumps(out_dir)}")
    )
    workflow = render("ci/gpuplan.yml.j2", out=out_dir, stack=stack, version=version("gpuplan"))
    targets = {
        base / "gpuplan.toml": toml_text,
        base / ".github" / "workflows" / "gpuplan.yml": workflow,
    }
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise UsageError(f"{', '.join(existing)} already exist(s)", "add --force to overwrite")
    for path, text in targets.items():
        atomic_write_text(path, text)
        click.echo(f"wrote {path}")
    click.echo(
        "next: edit gpuplan.toml, run `gpuplan generate`, commit both, and add the "
        "repository secrets the workflow lists"
    )


@main.command()
@click.option(
    "--toml",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="The project file (default: ./gpuplan.toml).",
)
@click.option(
    "--prices",
    is_flag=True,
    help="Also say whether a different plan is now cheaper (changes no files).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=0.10,
    show_default=True,
    help="With --prices: report when the best plan beats the committed one by more.",
)
def check(config_file: str | None, prices: bool, threshold: float) -> None:
    """Check that the committed project matches gpuplan.toml (exit 6 when it does not).

    Example: gpuplan check --prices
    """
    from infra.check import check_project
    from planner.errors import EXIT_DRIFT

    cfg = _config(config_file)
    drift, plan = check_project(cfg)
    if drift.clean:
        click.echo(
            f"ok: {cfg.out} matches gpuplan.toml ({plan.offer.provider} "
            f"{plan.offer.instance_type}, {plan.quant_format}, {plan.layout.label})"
        )
    else:
        for line in drift.plan_mismatches:
            click.echo(f"plan differs: {line}")
        for name in drift.missing:
            click.echo(f"missing: {cfg.out}/{name}")
        for name in drift.changed:
            click.echo(f"changed: {cfg.out}/{name}")
            for line in drift.diffs[name]:
                click.echo(f"    {line}")
        click.echo("fix: run `gpuplan generate` and commit the result")
    if prices:
        _price_suggestion(cfg, plan, threshold)
    if not drift.clean:
        raise SystemExit(EXIT_DRIFT)


def _price_suggestion(cfg: Any, plan: Any, threshold: float) -> None:
    from infra.check import improvement
    from planner.errors import NoFeasibleOfferError

    params = {**_cfg_planning(cfg)}
    try:
        ranking, _ = _rank(cfg.model or plan.base_model, params)
    except NoFeasibleOfferError as exc:
        click.echo(f"prices: no feasible offer at current prices ({exc.message})")
        return
    best = ranking.plans[0]
    same = [
        p
        for p in ranking.plans
        if p.offer.provider == plan.offer.provider
        and p.offer.instance_type == plan.offer.instance_type
        and p.offer.region == plan.offer.region
    ]
    current = same[0].objective_value if same else None
    if current is None:
        click.echo(
            f"prices: the committed offer ({plan.offer.provider} "
            f"{plan.offer.instance_type}) is no longer in the catalog; best now: "
            f"{best.offer.provider} {best.offer.instance_type}"
        )
    elif improvement(current, best.objective_value) > threshold:
        click.echo(
            f"prices: {best.offer.provider} {best.offer.instance_type} would now be "
            f"{improvement(current, best.objective_value):.0%} better on {plan.need.objective}"
            f" than the committed {plan.offer.instance_type}; regenerate to switch"
        )
    else:
        click.echo(
            "prices: the committed plan is still within "
            f"{threshold:.0%} of the best at current catalog prices"
        )


def _cfg_planning(cfg: Any) -> dict[str, Any]:
    """gpuplan.toml values in the shape of the shared planning options."""
    from planner.decide.plan import Need

    return {
        "config_path": None, "quant": cfg.quant, "context": cfg.context,
        "concurrency": cfg.concurrency, "prompt_tokens": cfg.prompt_tokens,
        "output_tokens": cfg.output_tokens, "kv_cache_dtype": cfg.kv_cache_dtype,
        "gpu_memory_utilization": cfg.gpu_memory_utilization, "objective": cfg.objective,
        "providers": ",".join(cfg.providers) if cfg.providers else None,
        "regions": ",".join(cfg.regions) if cfg.regions else None, "gpu": cfg.gpu,
        "instance_type": cfg.instance_type, "spot": cfg.spot, "max_price": cfg.max_price,
        "min_tokens_per_s": cfg.min_tokens_per_s, "max_ttft": cfg.max_ttft,
        "horizon_months": cfg.horizon_months, "max_nodes": Need().max_nodes, "from_hub": False,
        "target_rps": cfg.target_rps,
        "target_output_tokens_per_s": cfg.target_output_tokens_per_s,
        "replica_headroom": cfg.replica_headroom, "max_replicas": Need().max_replicas,
    }  # fmt: skip


_DEPLOY_OPTIONS = [
    click.option(
        "--toml",
        "config_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="gpuplan.toml (default: ./gpuplan.toml).",
    ),
    click.option(
        "--dir",
        "project_dir",
        type=click.Path(file_okay=False),
        default=None,
        help="The generated project (default: [deploy].out of gpuplan.toml).",
    ),
    click.option("--stack", default=None, help="Pulumi stack (default: [deploy].stack)."),
    click.option(
        "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
    ),
]


def deploy_options(f: Any) -> Any:
    for option in reversed(_DEPLOY_OPTIONS):
        f = option(f)
    return f


def _engine(config_file: str | None, project_dir: str | None, stack: str | None) -> Any:
    from pathlib import Path

    from infra.deploy import make_engine
    from planner.errors import UsageError

    cfg = _config(config_file)
    folder = Path(project_dir or cfg.out)
    if not (folder / "Pulumi.yaml").exists():
        raise UsageError(f"no Pulumi project at {folder}", "run `gpuplan generate` first")
    return cfg, folder, stack or cfg.stack, make_engine(folder, stack or cfg.stack)


def _public_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if type(v).__name__ == "Secret" else v for k, v in sorted(outputs.items())}


@main.command()
@deploy_options
@click.option("--yes", is_flag=True, help="Deploy without asking (required when not a TTY).")
@click.option("--preview", is_flag=True, help="Only show what would change.")
@click.option(
    "--wait-healthy",
    type=click.IntRange(min=0),
    default=None,
    help="Seconds to wait for /health and /v1/models (default: [deploy].wait_healthy).",
)
@click.option(
    "--destroy-on-failure",
    is_flag=True,
    help="Destroy the stack when the model never becomes healthy.",
)
def deploy(
    config_file: str | None,
    project_dir: str | None,
    stack: str | None,
    fmt: str,
    yes: bool,
    preview: bool,
    wait_healthy: int | None,
    destroy_on_failure: bool,
) -> None:
    """Run the committed project with Pulumi, then wait until the model answers.

    Example: gpuplan deploy --yes --format json
    """
    from infra.deploy import reveal
    from infra.deploy import wait_healthy as wait
    from planner.errors import DeployError

    def log(line: str) -> None:
        click.echo(line.rstrip("\n"), err=True)

    cfg, folder, stack_name, engine = _engine(config_file, project_dir, stack)
    if preview:
        summary = engine.preview(log)
        if fmt == "json":
            _print_json(
                {"schema": "gpuplan.deploy-preview/1", "stack": stack_name, "summary": summary}
            )
        else:
            click.echo(f"preview of {stack_name}: {summary}")
        return
    _confirm_or_refuse(yes, f"deploy stack {stack_name} from {folder}")
    outputs = engine.up(log)
    endpoint = str(reveal(outputs.get("endpoint", "")))
    model = str(outputs.get("model", ""))
    timeout = cfg.wait_healthy if wait_healthy is None else wait_healthy
    health = wait(
        endpoint,
        reveal(outputs.get("apiKey")),
        model,
        timeout_s=timeout,
        interval_s=float(os.environ.get("GPUPLAN_HEALTH_INTERVAL_S", "10")),
        on_output=log,
    )
    destroyed = False
    if not health.healthy and destroy_on_failure:
        log("destroying the stack (--destroy-on-failure)")
        engine.destroy(log)
        destroyed = True
    result = {
        "schema": "gpuplan.deploy/1",
        "stack": stack_name,
        "endpoint": endpoint,
        "model": model,
        "healthy": health.healthy,
        "detail": health.detail,
        "waited_s": round(health.waited_s, 1),
        "destroyed": destroyed,
        "outputs": _public_outputs(outputs),
    }
    if fmt == "json":
        _print_json(result)
    elif health.healthy:
        click.echo(
            f"deployed {model} at {endpoint} (healthy after {health.waited_s:.0f} s); "
            "API key: `pulumi stack output apiKey --show-secrets`"
        )
    if not health.healthy:
        raise DeployError(
            f"deployed, but the model is not serving: {health.detail}",
            "the stack was destroyed"
            if destroyed
            else "look at the machine's /var/log/gpuplan-boot.log, or redeploy with "
            "--destroy-on-failure",
        )


@main.command()
@deploy_options
def status(config_file: str | None, project_dir: str | None, stack: str | None, fmt: str) -> None:
    """Stack outputs, whether the model answers, and the hourly cost so far.

    Example: gpuplan status --format json
    """
    import time

    from infra.deploy import reveal
    from infra.deploy import wait_healthy as wait

    _, _, stack_name, engine = _engine(config_file, project_dir, stack)
    outputs = engine.outputs()
    endpoint = str(reveal(outputs.get("endpoint", "")))
    health = wait(
        endpoint,
        reveal(outputs.get("apiKey")),
        str(outputs.get("model", "")),
        timeout_s=0,
        interval_s=0,
    )
    since = engine.last_update_epoch()
    hours = (time.time() - since) / 3600 if since else None
    price = outputs.get("hourlyPriceUsd")
    cost = round(hours * float(price), 2) if hours is not None and price is not None else None
    result = {
        "schema": "gpuplan.status/1",
        "stack": stack_name,
        "endpoint": endpoint,
        "healthy": health.healthy,
        "detail": health.detail,
        "hours_since_last_update": round(hours, 2) if hours is not None else None,
        "estimated_cost_usd": cost,
        "outputs": _public_outputs(outputs),
    }
    if fmt == "json":
        _print_json(result)
        return
    for key, value in result.items():
        if key not in {"schema", "outputs"}:
            click.echo(f"{key}: {value}")
    for key, value in result["outputs"].items():
        click.echo(f"output {key}: {value}")


@main.command()
@deploy_options
@click.option("--yes", is_flag=True, help="Destroy without asking (required when not a TTY).")
def destroy(
    config_file: str | None, project_dir: str | None, stack: str | None, fmt: str, yes: bool
) -> None:
    """Tear the stack down (the machine and everything the project created).

    Example: gpuplan destroy --yes
    """
    _, folder, stack_name, engine = _engine(config_file, project_dir, stack)
    _confirm_or_refuse(yes, f"destroy stack {stack_name} of {folder}")
    engine.destroy(lambda line: click.echo(line.rstrip("\n"), err=True))
    if fmt == "json":
        _print_json({"schema": "gpuplan.destroy/1", "stack": stack_name, "destroyed": True})
    else:
        click.echo(f"destroyed stack {stack_name}")


if __name__ == "__main__":
    main()
