"""Load a ModelSpec from wherever the model is described.

Sources, most trusted first: a local GGUF header (exact tensor bytes), a local config.json, the
embedded registry, the Hugging Face Hub (cached, works offline once cached), and last a guess
from the name that is labelled as a guess everywhere it shows.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from dataclasses import replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from planner.errors import ModelSpecError, ProviderError, did_you_mean, not_utf8, redact, short
from planner.model.sources.hfconfig import parse_config
from planner.model.values import HF_ID, ModelSpec

COMMIT_ID = re.compile(r"[0-9a-f]{40}")  # a Git commit id, as the Hub names revisions


# ---------------------------------------------------------------- registry
@cache
def registry_entries() -> tuple[dict[str, Any], ...]:
    text = resources.files("planner.model.registry").joinpath("models.json").read_text("utf-8")
    return tuple(json.loads(text)["models"])


@cache
def _registry_index() -> dict[str, dict[str, Any]]:
    index: dict[str, dict[str, Any]] = {}
    for e in registry_entries():
        for key in [e["id"], e["id"].split("/")[-1], *e.get("aliases", [])]:
            index.setdefault(key.lower(), e)
    return index


def registry_names() -> list[str]:
    return sorted({e["id"] for e in registry_entries()} | set(_aliases()))


def _aliases() -> list[str]:
    return [a for e in registry_entries() for a in e.get("aliases", [])]


def find_registry_entry(name: str) -> dict[str, Any] | None:
    return _registry_index().get(name.strip().lower())


def spec_from_registry(entry: dict[str, Any]) -> ModelSpec:
    spec = parse_config(
        entry["config"],
        name=entry["id"],
        source="registry",
        source_ref=entry["config_source"],
        hf_quant_config=entry.get("hf_quant_config"),
    )
    published = entry.get("published") or {}
    notes = spec.notes + ((entry["note"],) if entry.get("note") else ())
    return replace(
        spec,
        published_params=published.get("parameter_count"),
        checkpoint_total_size=published.get("safetensors_total_size_bytes"),
        notes=notes,
    )


def quantized_variants(base_model: str) -> list[ModelSpec]:
    """Registry checkpoints that are pre-quantized variants of ``base_model``."""
    key = base_model.lower()
    return [
        spec_from_registry(e)
        for e in registry_entries()
        if (e.get("base_model") or "").lower() == key
    ]


# ---------------------------------------------------------------- local files
# The largest JSON a model folder holds is a safetensors index of a few MB; beyond this, the
# file given is not one (weights passed by mistake), and reading it whole would fill memory.
MAX_JSON_BYTES = 50 * 2**20


def _read_json(path: Path, what: str) -> Any:
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ModelSpecError(
                f"{what} {short(path)} is not a regular file", "give the path of config.json"
            )
        if st.st_size > MAX_JSON_BYTES:
            raise ModelSpecError(
                f"{what} {short(path)} is {st.st_size / 2**20:,.0f} MiB, too large for JSON",
                "give config.json (a few KB), not the weights",
            )
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ModelSpecError(f"{what} not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ModelSpecError(
            not_utf8(f"{what} {short(path)}", exc),
            "give the file as the model's Hugging Face repository has it (JSON is UTF-8)",
        ) from None
    except OSError as exc:
        raise ModelSpecError(f"cannot read {what} {path}: {exc}") from None
    except RecursionError:  # `[[[...]]]` 100,000 deep: no model's file is
        raise ModelSpecError(
            f"{what} {short(path)} is nested too deeply to be a model's JSON",
            "give the file as the model's Hugging Face repository has it (downloaded whole)",
        ) from None
    except json.JSONDecodeError as exc:
        raise ModelSpecError(
            f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            "give the file as the model's Hugging Face repository has it (downloaded whole)",
        ) from None


def spec_from_config_files(
    config_path: Path, name: str | None, source: str, source_ref: str | None = None
) -> ModelSpec:
    """Read config.json plus, when beside it, the safetensors index and hf_quant_config.json."""
    if config_path.is_dir():
        config_path = config_path / "config.json"
    folder = config_path.parent
    config = _read_json(config_path, "config file")
    hqc_path = folder / "hf_quant_config.json"
    hqc = _read_json(hqc_path, "hf_quant_config.json") if hqc_path.exists() else None
    spec = parse_config(
        config,
        # the folder's own name, also for a relative path such as ./config.json, whose parent
        # "." has an empty name (the plan then served `vllm serve ''`)
        name=name or folder.absolute().name or config_path.stem,
        source=source,
        source_ref=source_ref or str(config_path),
        hf_quant_config=hqc,
    )
    index_path = folder / "model.safetensors.index.json"
    if index_path.exists():
        index = _read_json(index_path, "safetensors index")
        meta = index.get("metadata") if isinstance(index, dict) else None
        total = meta.get("total_size") if isinstance(meta, dict) else None
        if type(total) is int and total > 0:  # else unknown: the size is computed from the shape
            spec = replace(spec, checkpoint_total_size=total)
    return spec


# ---------------------------------------------------------------- Hugging Face Hub
def hf_endpoint() -> str | None:
    """Endpoint override: GPUPLAN_HF_ENDPOINT, else huggingface_hub's own HF_ENDPOINT."""
    return os.environ.get("GPUPLAN_HF_ENDPOINT") or os.environ.get("HF_ENDPOINT") or None


HUB_CONNECT_TIMEOUT_S = 3.0  # one TCP connect: no network answers in well under a second


def _hub_reachable() -> str | None:
    """None when the Hub endpoint accepts a TCP connection, else why not. Skipped (None) behind
    a proxy, where only the proxy can say. huggingface_hub retries a refused connection five
    times over about 20 s; this answers in at most HUB_CONNECT_TIMEOUT_S."""
    import socket
    from urllib.parse import urlsplit

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                                       "ALL_PROXY", "all_proxy")):  # fmt: skip
        return None
    url = urlsplit(hf_endpoint() or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), HUB_CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"{url.hostname}:{port}: {exc.strerror or type(exc).__name__}"


def spec_from_hub(
    repo_id: str,
    *,
    revision: str | None = None,
    offline: bool = False,
    cache_dir: str | None = None,
) -> ModelSpec:
    """Fetch config.json (+ index, hf_quant_config.json) with huggingface_hub, cached.

    Gated models need HF_TOKEN (read by huggingface_hub). ``offline`` reads the cache only.
    """
    import logging

    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")  # read when huggingface_hub is imported
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    def fetch(filename: str, required: bool) -> Path | None:
        try:
            path = hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=cache_dir,
                endpoint=hf_endpoint(),
                local_files_only=offline,
            )
            return Path(str(path))
        except GatedRepoError:
            raise ModelSpecError(
                f"{repo_id} is gated on the Hugging Face Hub",
                "accept its license on the model page and set HF_TOKEN to a token with access",
            ) from None
        except RepositoryNotFoundError:
            raise ModelSpecError(
                f"model '{repo_id}' was not found on the Hugging Face Hub",
                (did_you_mean(repo_id, registry_names()) or "check the id")
                + " (private models need HF_TOKEN)",
            ) from None
        except RevisionNotFoundError:
            raise ModelSpecError(f"revision '{revision}' of {repo_id} not found") from None
        except HFValidationError:  # a name the Hub cannot hold (its ids are ASCII)
            raise ModelSpecError(
                f"'{short(repo_id)}' is not a valid Hugging Face id",
                "Hub ids are org/name of ASCII letters, digits, '-', '_' and '.'; "
                "run `gpuplan models` for the registry",
            ) from None
        except LocalEntryNotFoundError:
            if required:
                raise
            return None
        except EntryNotFoundError:
            if required:
                raise ModelSpecError(
                    f"{repo_id} has no {filename}", "gpuplan reads transformers-style repositories"
                ) from None
            return None

    if not offline:
        unreachable = _hub_reachable()
        if unreachable:
            raise _HubUnavailable(f"cannot connect to {redact(unreachable)}", network=True)
    # huggingface_hub logs each retry (with the URL, credentials included) as a warning.
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    try:
        config = fetch("config.json", required=True)
    except LocalEntryNotFoundError as exc:
        raise _HubUnavailable(redact(str(exc)), network=not offline) from None
    except ModelSpecError:
        raise
    except Exception as exc:  # network errors from requests/httpx, timeouts, HTTP 5xx
        raise _HubUnavailable(f"{type(exc).__name__}: {redact(str(exc))}", network=True) from None
    finally:
        hub_log.setLevel(level)
    assert config is not None
    folder = config.parent
    for extra in ("model.safetensors.index.json", "hf_quant_config.json"):
        # Optional files: their absence (or a failure to fetch them) changes nothing.
        with contextlib.suppress(Exception):
            fetch(extra, required=False)
    # huggingface_hub keeps each download under snapshots/<commit id>/ (its cache layout,
    # "Understand caching" in its docs): the commit read, whatever branch or tag named it
    commit = folder.name if COMMIT_ID.fullmatch(folder.name) else None
    spec = spec_from_config_files(
        folder / "config.json", repo_id, "hf", f"https://huggingface.co/{repo_id}"
    )
    return replace(spec, revision=commit)


class _HubUnavailable(Exception):
    """The Hub (or the cache, offline) could not answer; the caller decides what follows.
    ``network``: the Hub itself was asked and could not be reached (not just a cache miss)."""

    def __init__(self, message: str, network: bool = False) -> None:
        super().__init__(message)
        self.network = network


# ---------------------------------------------------------------- entry point
def load_model_spec(
    model: str | None,
    *,
    config_path: str | Path | None = None,
    gguf_path: str | Path | None = None,
    from_hub: bool = False,
    revision: str | None = None,
) -> ModelSpec:
    """Resolve MODEL (or --config / --gguf) to a ModelSpec; see the module docstring for order."""
    if gguf_path is not None and config_path is not None:
        raise ModelSpecError("give --config or --gguf, not both", "each describes the whole model")
    if revision is not None and (gguf_path is not None or config_path is not None):
        raise ModelSpecError(
            "--revision reads the Hugging Face Hub, not a local file", "drop --revision"
        )
    if gguf_path is not None:
        from planner.model.sources.gguf_file import spec_from_gguf

        return spec_from_gguf(Path(gguf_path), name=model)
    if config_path is not None:
        return spec_from_config_files(Path(config_path), model, "config")
    if not model or not model.strip():
        raise ModelSpecError(
            "no model given", "pass a model id, a local folder or .gguf file, or --config PATH"
        )
    model = model.strip()
    local = Path(model).expanduser()
    if local.suffix == ".gguf" or (local.exists() and local.is_file() and model.endswith(".gguf")):
        from planner.model.sources.gguf_file import spec_from_gguf

        return spec_from_gguf(local, name=None)
    if local.is_dir() and (local / "config.json").exists():
        return spec_from_config_files(local, None, "config")
    pathlike = model.startswith(("/", ".", "~")) or (os.sep in model and not HF_ID.match(model))
    if local.is_dir() and pathlike:  # a folder named as such, not an org/name id
        raise ModelSpecError(
            f"folder {short(model)} has no config.json",
            "point at a folder holding a Hugging Face checkpoint's config.json, or pass "
            "--config PATH or a .gguf file",
        )
    if local.is_file() and local.suffix == ".json":
        return spec_from_config_files(local, None, "config")
    hub_note = None
    if from_hub and not HF_ID.match(model):
        raise ModelSpecError(f"--from-hub needs a Hugging Face id (org/name), not '{model}'")
    # A revision of a Hub id (org/name) reads the Hub, even for a model the registry knows.
    if not from_hub and not (revision is not None and HF_ID.match(model)):
        entry = find_registry_entry(model)
        if entry is not None:
            if revision is not None:  # the registry holds one version: say so, never ignore it
                raise ModelSpecError(
                    f"a revision names a commit of a Hugging Face repository, but "
                    f"{short(model)} is a name in gpuplan's registry",
                    "give the model's Hub id (org/name) with the revision, or drop the revision",
                )
            return spec_from_registry(entry)
    if HF_ID.match(model):
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
        network_failed = False
        network_note = ""  # the Hub's own failure, which a cache miss after it must not hide
        # The plan serves the commit read: a commit id is the same in the cache and on the Hub,
        # but a branch (main when no revision is given) or a tag is asked of the Hub first, so
        # that a stale cache does not pin an old commit; the cache answers when it cannot.
        fixed = revision is not None and COMMIT_ID.fullmatch(revision) is not None
        order = (True,) if offline else (True, False) if fixed else (False, True)
        for cache_only in order:
            try:
                spec = spec_from_hub(model, revision=revision, offline=cache_only)
            except _HubUnavailable as exc:
                hub_note = short(str(exc).splitlines()[0] if str(exc) else "", 200)
                if exc.network and not cache_only:
                    network_note = hub_note
                network_failed = network_failed or exc.network
                continue
            if cache_only and network_failed:
                spec = replace(spec, notes=(*spec.notes, (
                    f"read from the local Hugging Face cache at commit {spec.revision}: the Hub "
                    f"could not be reached ({hub_note}), so a newer commit may exist"
                )))  # fmt: skip
            return spec
        if from_hub or network_failed:
            # The user asked for the Hub, or named a Hub id it could not reach: a network
            # error, never a silent fallback to a guess from the name.
            cached = " (and it is not in the local Hugging Face cache)" if network_note else ""
            raise ProviderError(
                f"could not fetch {short(model)} from the Hugging Face Hub: "
                f"{network_note or hub_note}{cached}",
                "check the network or GPUPLAN_HF_ENDPOINT; to work offline use a registry name "
                "(`gpuplan models`), --config PATH, or HF_HUB_OFFLINE=1 with a cached model",
            )
    from planner.model.sources.guess import guess_spec

    guessed = guess_spec(model)
    if guessed is not None:
        notes = guessed.notes
        hint = did_you_mean(model, registry_names())
        if hint:
            notes += (f"not in the registry; {hint}",)
        if hub_note:
            notes += (f"the Hugging Face Hub could not be reached ({hub_note})",)
        return replace(guessed, notes=notes)
    raise ModelSpecError(
        f"unknown model '{short(model)}'",
        (did_you_mean(model, registry_names()) or "run `gpuplan models` for the registry")
        + "; or pass a Hugging Face id, a local folder or .gguf file, or --config PATH",
    )
