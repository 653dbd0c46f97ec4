"""Deploy a generated project: the Pulumi engine behind a small interface, then health polling.

`PulumiEngine` drives the Automation API on the committed project folder (it needs the Pulumi
CLI). Tests and custom setups plug in another engine with GPUPLAN_ENGINE=module:factory, the
factory taking (project_dir, stack) like PulumiEngine. Nothing here prints: callers pass an
``on_output`` callback, and secret outputs come back wrapped so they cannot be printed by
accident.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import json
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from planner.errors import DeployError, Terminated, UsageError

Printer = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Secret:
    """A stack output marked secret; str() never shows it."""

    value: Any

    def __str__(self) -> str:
        return "[secret]"

    __repr__ = __str__


class Engine(Protocol):
    def up(self, on_output: Printer) -> dict[str, Any]: ...
    def preview(self, on_output: Printer) -> dict[str, int]: ...
    def destroy(self, on_output: Printer) -> None: ...
    def outputs(self) -> dict[str, Any]: ...
    def last_update_epoch(self) -> float | None: ...


class PulumiEngine:
    """The Pulumi Automation API on a local workspace rooted at the project folder."""

    def __init__(self, project_dir: Path, stack: str, create: bool = True) -> None:
        if shutil.which("pulumi") is None and not (Path.home() / ".pulumi/bin/pulumi").exists():
            raise DeployError(
                "the Pulumi CLI is not installed (the Automation API runs it)",
                "install it: curl -fsSL https://get.pulumi.com | sh (in GitHub Actions: "
                "pulumi/actions); then log in with PULUMI_ACCESS_TOKEN or PULUMI_BACKEND_URL",
            )
        try:
            from pulumi import automation as auto
        except ModuleNotFoundError:
            raise DeployError(
                "gpuplan deploy needs the pulumi Python package (the Automation API)",
                "pip install 'gpuplan[deploy]' (or the project's requirements.txt)",
            ) from None

        # `status` and `destroy` only select: creating a missing stack (a typo, another login
        # or backend) made `destroy` report "destroyed" while the real one kept running.
        opener = auto.create_or_select_stack if create else auto.select_stack
        try:
            self.stack = opener(stack_name=stack, work_dir=str(project_dir))
        except auto.StackNotFoundError:
            raise DeployError(
                f"no stack '{stack}' in this project on the backend you are logged in to",
                "check the stack name (--stack, [deploy].stack) and `pulumi login`; "
                "`pulumi stack ls` in the project folder lists its stacks",
            ) from None
        except Exception as exc:  # CommandError, missing login, bad project...
            raise DeployError(
                f"pulumi could not open stack '{stack}': {_first_line(exc)}",
                "check `pulumi login` and the project folder",
            ) from None

    def up(self, on_output: Printer) -> dict[str, Any]:
        result = self._run(
            lambda: self.stack.up(on_output=on_output, show_secrets=False, color="never"),
            "what was created before the failure stays in the stack (and is billed): fix the "
            "cause and deploy again, or `gpuplan destroy`",
        )
        return _wrap(result.outputs)

    def preview(self, on_output: Printer) -> dict[str, int]:
        """Operation ("create", "replace", "same"...) -> resource count."""
        result = self._run(lambda: self.stack.preview(on_output=on_output, color="never"))
        return {str(getattr(op, "value", op)): int(n) for op, n in result.change_summary.items()}

    def destroy(self, on_output: Printer) -> None:
        self._run(
            lambda: self.stack.destroy(on_output=on_output, show_secrets=False, color="never")
        )

    def outputs(self) -> dict[str, Any]:
        return _wrap(self._run(self.stack.outputs))

    def last_update_epoch(self) -> float | None:
        history = self._run(lambda: self.stack.history(page_size=1, show_secrets=False))
        if not history or not history[0].start_time:
            return None
        return utc_epoch(history[0].start_time)

    @staticmethod
    def _run(fn: Callable[[], Any], hint: str = "the stack state is kept by Pulumi") -> Any:
        """``fn`` (one Automation API call, which runs the Pulumi CLI and reads its output) in a
        worker thread, the main thread waiting for it: an interrupt then lands in the wait, not
        inside the Automation API, which would close the CLI's pipes under it (the CLI died of
        SIGPIPE mid-update, and the reader threads printed tracebacks). On Ctrl-C the terminal
        has signalled the Pulumi CLI too; on SIGTERM (Terminated) it is passed on as the SIGINT
        on which the CLI cancels the update and saves the stack's state. Either way gpuplan
        waits for the CLI to finish, at most CANCEL_WAIT_S, then exits as interrupted."""
        from pulumi.automation.errors import ConcurrentUpdateError

        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed to the main thread below
                box["error"] = exc
            finally:
                done.set()

        # An Event, not Thread.join: a join that an interrupt breaks into can report the thread
        # finished while it runs (CPython before 3.12), and gpuplan would leave the CLI orphaned.
        threading.Thread(target=work, name="pulumi", daemon=True).start()
        try:
            while not done.wait(0.2):
                pass
        except KeyboardInterrupt as interrupt:
            if isinstance(interrupt, Terminated):
                _signal_children(signal.SIGINT)
            done.wait(CANCEL_WAIT_S)
            raise
        exc = box.get("error")
        if exc is None:
            return box.get("value")
        if isinstance(exc, ConcurrentUpdateError):  # Pulumi Cloud's 409, or a lock file
            raise DeployError(
                f"the stack is locked by another update: {_first_line(exc)}",
                "another deploy, preview or destroy of this stack is running: wait for it and "
                "run again; only if none is (a killed run left the lock), `pulumi cancel` in "
                "the project folder",
            ) from None
        if isinstance(exc, Exception):
            raise DeployError(
                f"pulumi failed: {_first_line(exc)}", f"see the streamed log above; {hint}"
            ) from None
        raise exc


# How long an interrupted gpuplan waits for the Pulumi CLI to cancel its update and save the
# stack's state: a judgement (a bound, not a measured cancel time; a cancel that takes longer
# leaves the lock `pulumi cancel` clears). CI runners kill the whole process tree sooner:
# GitHub after 7.5 + 2.5 s (docs.github.com, workflow cancellation reference).
CANCEL_WAIT_S = 120.0


def _signal_children(sig: int) -> None:
    """Send ``sig`` to this process's child processes (Linux: /proc/self/task/*/children; none
    found elsewhere, and then the CLI is left to the runner, as before)."""
    for listing in Path("/proc/self/task").glob("*/children"):
        try:
            pids = [int(pid) for pid in listing.read_text().split()]
        except (OSError, ValueError):
            continue
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)


def _wrap(outputs: Any) -> dict[str, Any]:
    return {k: Secret(v.value) if v.secret else v.value for k, v in outputs.items()}


def _first_line(exc: BaseException) -> str:
    """The line that says what went wrong. A CommandError's text starts with "code: 255" and
    the CLI's stdout; Pulumi's own first `error:` line (e.g. "PULUMI_ACCESS_TOKEN must be
    set ...") is what the user needs."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    for line in lines:
        if line.lower().startswith(("error:", "stderr: error:")):
            return line.removeprefix("stderr:").strip()[:300]
    useful = [line for line in lines if not line.startswith(("code:", "stdout:", "stderr:"))]
    useful = useful or [
        line.partition(":")[2].strip() for line in lines if line.startswith("stderr:")
    ]
    useful = [line for line in useful if line]
    return useful[0][:300] if useful else type(exc).__name__


def utc_epoch(moment: datetime.datetime) -> float:
    """Seconds since the epoch of a time the Automation API parses from Pulumi's "...Z"
    (UTC) without a zone: read as local time, it was hours off on a machine not set to UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def make_engine(project_dir: Path, stack: str, create: bool = True) -> Engine:
    """PulumiEngine, or the factory named by GPUPLAN_ENGINE=module:callable (called with
    ``create`` as a keyword: False when the stack must exist already, a DeployError if not)."""
    spec = os.environ.get("GPUPLAN_ENGINE")
    if spec:
        module, _, attr = spec.partition(":")
        hint = "give module:factory, a callable of (project_dir, stack, create), or unset it"
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise UsageError(f"GPUPLAN_ENGINE={spec} cannot be loaded: {exc}", hint) from None
        try:
            engine: Engine = factory(project_dir, stack, create=create)
        except TypeError as exc:  # not a factory of that shape (os:getcwd, say)
            raise UsageError(
                f"GPUPLAN_ENGINE={spec} is not an engine factory: {exc}", hint
            ) from None
        return engine
    return PulumiEngine(project_dir, stack, create)


# ------------------------------------------------------------------ health
@dataclass(frozen=True, slots=True)
class Health:
    healthy: bool
    detail: str
    waited_s: float
    models: tuple[str, ...] = ()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib follows a redirect with every header of the request, Authorization included, to
    whatever host it names: a request carrying the API key follows none (the 3xx comes back)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_KEYED = urllib.request.build_opener(_NoRedirect)
_REFUSED = (401, 403)


def _get(url: str, api_key: str | None, timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    opener = urllib.request.urlopen
    if api_key:
        request.add_unredirected_header("Authorization", f"Bearer {api_key}")
        opener = _KEYED.open
    try:
        with opener(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def wait_healthy(
    endpoint: str,
    api_key: str | None,
    model: str,
    timeout_s: float,
    interval_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_output: Printer | None = None,
) -> Health:
    """Poll ``/health`` until 200, then check ``/v1/models`` lists ``model``. Bounded by
    ``timeout_s``: connection refused, 502/503 (the weights are still loading) keep waiting.
    vLLM's --api-key leaves /health open (only paths under /v1 are checked) and so does the
    generated proxy; a gateway that guards /health too is asked again with the key. A refused
    key or a redirect of a keyed request ends the wait at once: waiting cannot change them."""
    if not endpoint.startswith(("http://", "https://")):
        return Health(False, f"no usable endpoint in the stack outputs ({endpoint!r})", 0.0)
    base = endpoint.rstrip("/").removesuffix("/v1")
    start = clock()
    last = "not polled"
    while True:
        try:
            status, _ = _get(f"{base}/health", None, timeout=min(10.0, interval_s + 5))
            last = f"/health answered {status}"
            if status in _REFUSED and api_key:  # a gateway that guards every path
                status, _ = _get(f"{base}/health", api_key, timeout=min(10.0, interval_s + 5))
                last = f"/health answered {status}"
                if why := _refusal(last, status):
                    return Health(False, why, clock() - start)
            if status == 200:
                status, body = _get(f"{base}/v1/models", api_key, timeout=10.0)
                if status == 200:
                    models = _model_ids(json.loads(body))
                    waited = clock() - start
                    if model in models:
                        return Health(True, "healthy", waited, models)
                    return Health(
                        False,
                        f"the endpoint serves {', '.join(models) or 'no model'}, not {model}",
                        waited,
                        models,
                    )
                last = f"/v1/models answered {status}"
                if why := _refusal(last, status):
                    return Health(False, why, clock() - start)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            last = f"not answering yet ({type(reason).__name__})"
        except ValueError:
            last = "/v1/models answered with malformed JSON or no model list"
        waited = clock() - start
        if waited >= timeout_s:
            return Health(False, f"not healthy after {timeout_s:g} s: {last}", waited)
        if on_output:
            on_output(f"waiting for {base}: {last} ({waited:.0f} s)")
        sleep(min(interval_s, timeout_s - waited))  # the last poll at the timeout, not after


def _refusal(last: str, status: int) -> str | None:
    """Why the wait ends now (a refused key, a keyed request redirected), else None."""
    if status in _REFUSED:
        return f"{last}: the API key was refused"
    if 300 <= status < 400:
        return f"{last}, a redirect, not followed with the API key (export the final address)"
    return None


def _model_ids(doc: Any) -> tuple[str, ...]:
    """The model ids of an OpenAI-style /v1/models answer; ValueError if it is not one."""
    data = doc.get("data", []) if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise ValueError("not a model list")
    return tuple(str(m.get("id", "")) for m in data if isinstance(m, dict))


def reveal(value: Any) -> Any:
    return value.value if isinstance(value, Secret) else value
