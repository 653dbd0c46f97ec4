"""The --plot chart: cost per 1M output tokens against throughput, Pareto frontier marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from planner.errors import UsageError


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower cost and higher throughput are better)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_tps = [], float("-inf")
    for i in order:
        if points[i][1] > best_tps:
            front.append(i)
            best_tps = points[i][1]
    return front


def write_plot(plans: list[Any], path: Path) -> Path:
    suffix = path.suffix.lower()
    if suffix not in {".png", ".svg"}:
        raise UsageError(f"--plot writes .png or .svg files, not '{suffix or path.name}'")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib", "pip install 'gpuplan[plot]'") from None
    from planner.fsutil import atomic_write_bytes

    pts = [
        (p.estimate.usd_per_million_output_tokens, p.estimate.aggregate_output_tokens_per_s)
        for p in plans
    ]
    front = pareto_front(pts)
    fig, ax = plt.subplots(figsize=(9, 6))
    ax.scatter([p[1] for p in pts], [p[0] for p in pts], s=14, color="#9aa5b1", label="offers")
    fx = [pts[i][1] for i in front]
    fy = [pts[i][0] for i in front]
    ax.plot(fx, fy, "-o", color="#d9480f", markersize=5, label="Pareto frontier")
    for i in front[:12]:
        o = plans[i].offer
        ax.annotate(
            f"{o.provider} {o.gpu_count}x{o.gpu}",
            (pts[i][1], pts[i][0]),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("aggregate output tokens/s")
    ax.set_ylabel("$ per 1M output tokens")
    ax.set_title(f"{plans[0].base_model}: cost vs throughput")
    ax.legend()
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=suffix[1:], metadata={"Date": None} if suffix == ".svg" else None)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
