"""Settings: one merge of command-line flags, GPUPLAN_<KEY> variables, gpuplan.toml, defaults.

Precedence, for every key: flag > ``GPUPLAN_<KEY>`` environment variable > gpuplan.toml >
default. Every value is validated here, once, whatever its source, and an error names the source
(``--context``, ``GPUPLAN_CONTEXT`` or ``gpuplan.toml: 'workload.context'``), what it got and what
it accepts. Each default is written once: workload and constraint defaults are the fields of
``decide.plan.Need``; the rest are in ``KEYS`` below.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from planner.decide.fit import saturates
from planner.decide.objective import OBJECTIVES, WORKLOADS
from planner.decide.plan import Need
from planner.errors import UsageError, redact, short
from planner.tomlfile import read_toml_file

DEFAULT_TOML = "gpuplan.toml"
KV_CACHE_DTYPES = ("auto", "fp8")


@dataclass(frozen=True, slots=True)
class Key:
    """One setting: where it lives in gpuplan.toml, its type, default and allowed values."""

    section: str  # the [table] of gpuplan.toml
    type: type  # str, int, float, bool or list (of str)
    help: str
    default: Any = None
    need_field: str | None = None  # the Need field that carries it (and its default)
    choices: tuple[str, ...] | None = None
    minimum: float | None = None  # inclusive unless min_open
    min_open: bool = False
    maximum: float | None = None


def _need(name: str) -> Any:
    f = Need.__dataclass_fields__[name]
    return f.default if f.default is not MISSING else None


# The maxima below are plausibility limits that catch typos (a horizon of 1,200 months, a
# 10-million-GB disk), several times anything real; they are not sourced facts. The minima are
# what the values mean (a positive count, a utilisation share above 0).
KEYS: dict[str, Key] = {
    "model": Key("model", str, "registry name, Hugging Face id or local folder"),
    "revision": Key("model", str, "Hugging Face revision (branch, tag or commit) of MODEL; "
                    "the plan serves the commit it names"),
    "quant": Key("model", str, "auto, bf16, fp8, awq, ... (default: the checkpoint's)"),
    "context": Key("workload", int, "longest request in tokens (--max-model-len)",
                   need_field="context", minimum=1, maximum=10_000_000),
    "concurrency": Key("workload", int, "requests of `context` tokens served at once",
                       need_field="concurrency", minimum=1, maximum=1_000_000),
    "workload": Key("workload", str, "interactive (figures at `concurrency` streams, a default "
                    "service level) or batch (an offline job, $ per 1M tokens at saturation)",
                    need_field="workload", choices=WORKLOADS),
    "job_requests": Key("workload", int, "requests of an offline job (--workload batch): "
                        "the plans say how long it runs and what it costs",
                        need_field="job_requests", minimum=1, maximum=10**12),
    "prompt_tokens": Key("workload", int, "typical prompt", need_field="prompt_tokens",
                         minimum=1, maximum=10_000_000),
    "output_tokens": Key("workload", int, "typical answer", need_field="output_tokens",
                         minimum=1, maximum=10_000_000),
    "kv_cache_dtype": Key("workload", str, "KV cache dtype", need_field="kv_cache_dtype",
                          choices=KV_CACHE_DTYPES),
    "gpu_memory_utilization": Key("workload", float, "vLLM's share of each GPU's memory",
                                  need_field="gpu_memory_utilization", minimum=0,
                                  min_open=True, maximum=1),
    "objective": Key("constraints", str, "what to minimise (auto: the cheapest $/h that serves "
                     "the load; batch: $ per 1M output tokens)", need_field="objective",
                     choices=OBJECTIVES),
    "providers": Key("constraints", list, 'e.g. ["aws", "gcp"]'),
    "regions": Key("constraints", list, "substrings of regions"),
    "gpu": Key("constraints", str, "only this GPU (A100: any A100 variant)"),
    "instance_type": Key("constraints", str, "only this instance type"),
    "gpus": Key("constraints", int, "only machines with this many GPUs", need_field="gpus",
                minimum=1, maximum=64),
    "tp": Key("constraints", int, "only this tensor-parallel degree", need_field="tp",
              minimum=1, maximum=64),
    "spot": Key("constraints", bool, "spot / interruptible prices", need_field="spot"),
    "max_price": Key("constraints", float, "USD per hour for the whole deployment",
                     need_field="max_price_usd_per_hour", minimum=0),
    "min_tokens_per_s": Key("constraints", float, "tokens/s each stream sees at the load",
                            need_field="min_tokens_per_s", minimum=0),
    "max_ttft": Key("constraints", float, "time to first token, ms",
                    need_field="max_ttft_ms", minimum=0),
    "horizon_months": Key("constraints", float, "spreads monthly rentals' setup fees",
                          need_field="horizon_months", minimum=0, min_open=True,
                          maximum=120),
    "max_nodes": Key("constraints", int, "pipeline-parallel nodes when one machine is too small",
                     need_field="max_nodes", minimum=1, maximum=16),
    "target_rps": Key("constraints", float, "requests a second to serve: sizes replicas",
                      minimum=0, min_open=True, maximum=1_000_000),
    "target_output_tokens_per_s": Key("constraints", float, "output tokens a second: sizes "
                                      "replicas", minimum=0, min_open=True,
                                      maximum=1_000_000_000),
    "deadline_hours": Key("constraints", float, "finish the job of job_requests within this "
                          "many hours: sizes replicas", need_field="deadline_hours", minimum=0,
                          min_open=True, maximum=24 * 366),
    "replica_headroom": Key("constraints", float, "spare capacity above the target (0.2 = 20%)",
                            need_field="replica_headroom", minimum=0, maximum=10),
    "max_replicas": Key("constraints", int, "most identical machines (replicas) a target, or "
                        "streams no single machine serves, may use",
                        need_field="max_replicas", minimum=1, maximum=1024),
    "spread": Key("constraints", bool, "let identical machines share an interactive load's "
                  "streams even when one machine serves it (ranked with the one-machine plans)",
                  need_field="spread"),
    "out": Key("deploy", str, "folder of the generated project", default="infra/gpuplan"),
    "stack": Key("deploy", str, "Pulumi stack", default="dev"),
    "allow_cidrs": Key("deploy", list, "networks allowed to reach the serving port"),
    "ssh_cidr": Key("deploy", str, "network allowed to SSH in"),
    "ssh_key": Key("deploy", str, "path of an OpenSSH public key"),
    "network": Key("deploy", str, "an existing AWS VPC id or GCP network (default: a dedicated "
                   "one)"),
    "subnets": Key("deploy", list, "subnets of that VPC / the GCP subnetwork"),
    "disk_gb": Key("deploy", int, "root disk in GB instead of the size computed from the "
                   "download", minimum=20, maximum=65536),
    "image": Key("deploy", str, "vLLM container image instead of the pinned one"),
    "extra_vllm_args": Key("deploy", list, "arguments appended to `vllm serve`"),
    "tls_certificate": Key("deploy", str, "AWS: an ACM certificate ARN for a TLS listener"),
    "tls_domain": Key(
        "deploy",
        str,
        "HTTPS at this domain: on AWS with tls_certificate; on GCP and Hetzner alone (a Let's "
        "Encrypt certificate on the machine; point the domain's DNS at it)",
    ),
    "allow_open_port": Key("deploy", bool, "insist on a serving port open to every address",
                           default=False),
    "allow_remote_code": Key("deploy", bool, "let vLLM run code from the model's repository "
                             "(--trust-remote-code) for a model that needs it", default=False),
    "allow_guessed_model": Key("deploy", bool, "insist on deploying a model known only by a "
                               "guess from its name", default=False),
    "ci_install": Key("deploy", str, "what the CI workflow pip-installs (default: the gpuplan "
                      "you run)"),
    "wait_healthy": Key("deploy", int, "seconds deploy waits for the model", default=1800,
                        minimum=0, maximum=7 * 24 * 3600),
}  # fmt: skip


def default_of(key: str) -> Any:
    """The one default of a key (for --help and for the merge)."""
    k = KEYS[key]
    return _need(k.need_field) if k.need_field else k.default


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting after the merge. ``sources`` says where each non-default value came from;
    ``toml_path`` is the gpuplan.toml read, if any."""

    model: str | None = None
    revision: str | None = None
    quant: str | None = None
    context: int = default_of("context")
    concurrency: int = default_of("concurrency")
    workload: str = default_of("workload")
    job_requests: int | None = None
    prompt_tokens: int = default_of("prompt_tokens")
    output_tokens: int = default_of("output_tokens")
    kv_cache_dtype: str = default_of("kv_cache_dtype")
    gpu_memory_utilization: float = default_of("gpu_memory_utilization")
    objective: str = default_of("objective")
    providers: tuple[str, ...] | None = None
    regions: tuple[str, ...] | None = None
    gpu: str | None = None
    instance_type: str | None = None
    gpus: int | None = None
    tp: int | None = None
    spot: bool = default_of("spot")
    max_price: float | None = None
    min_tokens_per_s: float | None = None
    max_ttft: float | None = None
    horizon_months: float = default_of("horizon_months")
    max_nodes: int = default_of("max_nodes")
    target_rps: float | None = None
    target_output_tokens_per_s: float | None = None
    deadline_hours: float | None = None
    replica_headroom: float = default_of("replica_headroom")
    max_replicas: int = default_of("max_replicas")
    spread: bool = default_of("spread")
    out: str = default_of("out")
    stack: str = default_of("stack")
    allow_cidrs: tuple[str, ...] = ()
    ssh_cidr: str | None = None
    ssh_key: str | None = None
    network: str | None = None
    subnets: tuple[str, ...] = ()
    disk_gb: int | None = None
    image: str | None = None
    extra_vllm_args: tuple[str, ...] = ()
    tls_certificate: str | None = None
    tls_domain: str | None = None
    allow_open_port: bool = default_of("allow_open_port")
    allow_guessed_model: bool = default_of("allow_guessed_model")
    allow_remote_code: bool = default_of("allow_remote_code")
    ci_install: str | None = None
    wait_healthy: int = default_of("wait_healthy")
    toml_path: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict)
    # gpuplan.toml values a GPUPLAN_<KEY> variable replaced with another (said with the note)
    shadowed: tuple[str, ...] = ()

    def need(self) -> Need:
        """The workload and constraints as the decision stage takes them."""
        one = self._one_load()
        if one is not self:
            return one.need()
        if self.target_rps and self.target_output_tokens_per_s:
            raise UsageError(
                "give target_rps or target_output_tokens_per_s, not both",
                f"they came from {self.sources.get('target_rps')} and "
                f"{self.sources.get('target_output_tokens_per_s')}",
            )
        target = (
            self.target_rps * self.output_tokens if self.target_rps else None
        ) or self.target_output_tokens_per_s
        values = {k.need_field: getattr(self, name) for name, k in KEYS.items() if k.need_field}
        if self.job_requests is not None:
            if self.workload != "batch" and "workload" in self.sources:
                raise UsageError(
                    f"job_requests ({self.sources['job_requests']}) is an offline job, but "
                    f"the workload is '{self.workload}' ({self.sources['workload']})",
                    "drop --workload, or give --workload batch",
                )
            if target:
                raise UsageError(
                    "a job (job_requests) with a throughput target (target_rps, "
                    "target_output_tokens_per_s): the target would drop the job",
                    "give --deadline-hours for when the job must finish instead",
                )
            values["workload"] = "batch"  # a job size makes the load an offline job
        if self.deadline_hours is not None:
            if self.job_requests is None:
                raise UsageError(
                    f"a deadline ({self.sources.get('deadline_hours', 'deadline_hours')}) needs "
                    "the job's size",
                    "give --job-requests N (requests of --prompt-tokens in / --output-tokens out)",
                )
            target = self.job_requests * self.output_tokens / (self.deadline_hours * 3600)
        need = Need(**values, target_output_tokens_per_s=target)
        # machines share the streams of an interactive load only
        return replace(need, spread=False) if saturates(need) else need

    def _one_load(self) -> Settings:
        """These settings with one load: ``concurrency`` streams (above 1) and another load (a
        throughput target, a job, the batch workload) given at different precedence levels
        keep the one given with more (flag > GPUPLAN_ variable > file); at the same level they
        are refused, since the figures would describe neither."""
        if "concurrency" not in self.sources or self.concurrency == default_of("concurrency"):
            return self
        keys = ("target_rps", "target_output_tokens_per_s", "job_requests", "deadline_hours")
        others = [key for key in keys if getattr(self, key) is not None]
        others += ["workload"] if self.workload == "batch" else []
        if not others:
            return self
        mine = _rank_of(self.sources["concurrency"])
        other = max(others, key=lambda key: _rank_of(self.sources.get(key, "")))
        theirs = _rank_of(self.sources.get(other, ""))
        if theirs == mine:
            raise UsageError(
                f"concurrency ({self.sources['concurrency']}) is an interactive load of N "
                f"streams, but {other} ({self.sources.get(other, 'set')}) declares another "
                "load",
                "drop one of them: a throughput target sizes the replicas to it, a batch "
                "job runs at the largest batch that fits",
            )
        if theirs > mine:
            return replace(self, concurrency=default_of("concurrency"))
        return replace(
            self, target_rps=None, target_output_tokens_per_s=None, job_requests=None,
            deadline_hours=None, workload="interactive",
        )  # fmt: skip

    def from_toml(self) -> list[str]:
        """The keys whose value came from gpuplan.toml (to say so)."""
        return [k for k, src in self.sources.items() if src.endswith(".toml")]


def on_command_line(source: str) -> bool:
    """Whether a setting's source (Settings.sources) is the command line: a flag or MODEL."""
    return source.startswith("--") or source == "MODEL"


def named_source(s: Settings, key: str) -> str | None:
    """Where a setting not given on the command line came from, as errors name it
    (``GPUPLAN_TP``, ``gpuplan.toml: 'constraints.tp'``); None for a flag or a default."""
    source = s.sources.get(key)
    return None if source is None or on_command_line(source) else _where(key, source)


def _rank_of(source: str) -> int:
    """Precedence of where a value came from: flag 3 > GPUPLAN_ variable 2 > file 1."""
    return 3 if on_command_line(source) else 2 if source.startswith("GPUPLAN_") else 1


def check_need(need: Need, source: str) -> None:
    """Every Need field checked as the setting that carries it would be (a plan file's need
    comes from a file the user may have edited: same types, ranges and choices as a flag)."""
    for key, k in KEYS.items():
        if k.need_field is None:
            continue
        value = getattr(need, k.need_field)
        if value is not None:
            _check(key, value, f"{source} need.{k.need_field}")


# Filters: given with no item (`--providers ""`, `regions = []`), they would silently mean "no
# filter", the opposite of what was typed; an empty GPUPLAN_<KEY> counts as unset, as for every key
FILTER_LISTS = ("providers", "regions")


def _given(key: str, value: Any, source: str) -> Any:
    """_check of a value the user gave (flag, variable, file): also refuses an empty filter."""
    value = _check(key, value, source)
    if key in FILTER_LISTS and not value:
        raise UsageError(
            f"{_where(key, source)} has no item",
            "leave it out to consider every one",
        )
    return value


def _where(key: str, source: str) -> str:
    return f"{source}: '{KEYS[key].section}.{key}'" if source.endswith(".toml") else source


def _check(key: str, value: Any, source: str) -> Any:
    """Type, range and choice check of one value from one source; returns the typed value."""
    k, where = KEYS[key], _where(key, source)
    ok = isinstance(value, k.type) and not (k.type is int and isinstance(value, bool))
    if k.type is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            ok, value = True, float(value)
        except OverflowError:  # TOML allows integers no float holds
            raise UsageError(
                f"{where} must be a finite number, got a {len(str(value))}-digit integer"
            ) from None
    if k.type is list:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    if not ok:
        raise UsageError(f"{where} must be {k.type.__name__} ({k.help}), got {value!r}")
    if k.type is float and not math.isfinite(value):
        raise UsageError(f"{where} must be a finite number, got {value!r}")
    if k.choices is not None and value not in k.choices:
        raise UsageError(f"{where} is {value!r}; allowed: {', '.join(k.choices)}")
    if k.type in (int, float):
        low_bad = k.minimum is not None and (
            value <= k.minimum if k.min_open else value < k.minimum
        )
        if low_bad or (k.maximum is not None and value > k.maximum):
            low = "" if k.minimum is None else ("> " if k.min_open else ">= ") + f"{k.minimum:g}"
            high = "" if k.maximum is None else f"<= {k.maximum:g}"
            raise UsageError(
                f"{where} is {value!r}; it must be {' and '.join(p for p in (low, high) if p)}"
            )
    if k.type is str and not value.strip():
        raise UsageError(f"{where} is empty ({k.help})")
    if k.type is str and any(c < " " or c == "\x7f" for c in value):  # a newline, an escape...
        raise UsageError(f"{where} holds a control character: '{short(value, 60)}'")
    if k.type is list:
        items = tuple(v.strip() for v in value if v.strip())
        return items
    return value


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _parse_env(key: str, raw: str) -> Any:
    """A GPUPLAN_<KEY> string as the key's type (range checks follow in _check)."""
    name, typ = f"GPUPLAN_{key.upper()}", KEYS[key].type
    try:
        if typ is bool:
            if raw.strip().lower() not in _TRUE | _FALSE:
                raise ValueError
            return raw.strip().lower() in _TRUE
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
        if typ is list:
            return [v for v in raw.split(",")]
        return raw
    except ValueError:
        allowed = " (true/false, 1/0, yes/no)" if typ is bool else ""
        what = {bool: "true or false", int: "a whole number", float: "a number"}[typ]
        raise UsageError(
            f"{name}={raw!r} is not a valid {typ.__name__}{allowed}",
            f"set it to {what}, or unset it (`unset {name}`)",
        ) from None


def _read_toml(path: Path) -> dict[str, Any]:
    doc = read_toml_file(path)
    values: dict[str, Any] = {}
    for section, table in doc.items():
        if not isinstance(table, dict):
            raise UsageError(f"{path}: '{section}' must be a table ([{section}])")
        for key, value in table.items():
            if key not in KEYS or KEYS[key].section != section:
                known = ", ".join(k for k, v in KEYS.items() if v.section == section)
                raise UsageError(
                    f"{path}: unknown key '{section}.{key}'",
                    f"keys of [{section}]: {known or 'none (unknown section)'}",
                )
            values[key] = value
    return values


def load_settings(
    flags: Mapping[str, Any] | None = None,
    toml: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Merge ``flags`` (only the ones given on the command line) > ``GPUPLAN_<KEY>`` > gpuplan.toml
    > defaults, validating every value.

    ``toml`` names the file explicitly (it must exist); without it ./gpuplan.toml is read when
    present. A flag value of None means "not given".
    """
    env = os.environ if env is None else env
    path = Path(toml) if toml is not None else Path(DEFAULT_TOML)
    if toml is not None and not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise UsageError(f"--toml {toml} {what}", "run `gpuplan init` to write one, or drop --toml")
    if toml is None and path.exists() and not path.is_file():  # a folder: never read silently
        raise UsageError(f"./{DEFAULT_TOML} is not a file", "rename it, or give --toml FILE")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    toml_path = None
    if path.is_file():
        toml_path = str(path)
        for key, value in _read_toml(path).items():
            values[key], sources[key] = _given(key, value, toml_path), toml_path
    shadowed = []
    for key in KEYS:
        raw = env.get(f"GPUPLAN_{key.upper()}")
        if raw is not None and raw != "":
            source = f"GPUPLAN_{key.upper()}"
            value = _given(key, _parse_env(key, raw), source)
            # said: CI's workflow sets GPUPLAN_STACK; a stack changed in the file went unsaid
            if toml_path and sources.get(key) == toml_path and values[key] != value:
                said = f"{source}={raw!r} overrides {key} = {values[key]!r} there"
                shadowed.append(redact(said))  # ci_install may be a URL with a token
            values[key], sources[key] = value, source
    for key, value in (flags or {}).items():
        if key not in KEYS:
            raise KeyError(f"not a setting: {key}")  # a programming error, not a user's
        if value is None or value == ():
            continue
        source = "MODEL" if key == "model" else f"--{key.replace('_', '-')}"  # an argument
        values[key], sources[key] = _given(key, value, source), source
    names = {f.name for f in fields(Settings)}
    return Settings(
        **{k: v for k, v in values.items() if k in names},
        toml_path=toml_path,
        sources=sources,
        shadowed=tuple(shadowed),
    )
