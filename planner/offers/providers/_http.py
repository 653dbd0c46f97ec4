"""Plain-HTTP JSON calls with timeouts and retry with backoff, shared by the HTTP providers."""

from __future__ import annotations

import math
import os
import time
from typing import Any, NamedTuple

from planner.errors import ProviderError, UsageError, short


# Numbers the environment can set for every provider call: default, whether 0 is allowed, and
# the most that makes sense (a longer wait is a typo, and a huge one overflows time.sleep).
# Checked once before any provider runs (refresh.refresh): a bad one is a usage error naming it.
class EnvNumber(NamedTuple):
    default: float
    zero_ok: bool
    most: float


ENV_NUMBERS = {
    "GPUPLAN_HTTP_TIMEOUT_S": EnvNumber(15.0, zero_ok=False, most=600.0),
    "GPUPLAN_RETRY_BACKOFF_S": EnvNumber(0.5, zero_ok=True, most=60.0),  # 0: retry at once
    "GPUPLAN_EUR_USD": EnvNumber(1.1637, zero_ok=False, most=10.0),
}


def env_number(name: str) -> float:
    """``name``'s value from the environment (its default when unset or empty): a finite number
    above 0 (or 0 where allowed), else one usage error that names the variable."""
    default, zero_ok, most = ENV_NUMBERS[name]
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok) or value > most:
        floor = "from 0" if zero_ok else "above 0"
        raise UsageError(
            f"{name} must be a number {floor} up to {most:g}, got {short(repr(raw), 40)}",
            f"unset it, or set it like {name}={default:g}",
        )
    return value


RETRY_STATUSES = {429, 500, 502, 503, 504}


# How many times a call is tried (a timeout, a lost connection, 429 or 5xx is tried again)
ATTEMPTS = 3


def backoff_pause(attempt: int, first_s: float | None = None) -> None:
    """Sleep before try ``attempt`` (1, 2, ...): ``first_s`` (GPUPLAN_RETRY_BACKOFF_S by
    default), doubled each time."""
    first = env_number("GPUPLAN_RETRY_BACKOFF_S") if first_s is None else first_s
    time.sleep(first * 2 ** (attempt - 1))


class JsonHttp:
    """A requests session bound to one base URL. Retries connection errors, timeouts, 429 and
    5xx with exponential backoff (honouring a short Retry-After), then raises ProviderError.
    GPUPLAN_HTTP_TIMEOUT_S and GPUPLAN_RETRY_BACKOFF_S tune the timeout and first backoff."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout_s: float | None = None,
        attempts: int = ATTEMPTS,
        backoff_s: float | None = None,
    ) -> None:
        import requests

        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": "gpuplan", **(headers or {})})
        if auth:
            self.session.auth = auth
        self.timeout_s = timeout_s or env_number("GPUPLAN_HTTP_TIMEOUT_S")
        self.attempts = attempts
        self.backoff_s = (
            backoff_s if backoff_s is not None else env_number("GPUPLAN_RETRY_BACKOFF_S")
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        url = f"{self.base_url}/{path.lstrip('/')}"
        last = ""
        for attempt in range(self.attempts):
            if attempt:
                backoff_pause(attempt, self.backoff_s)
            try:
                resp = self.session.request(method, url, timeout=self.timeout_s, **kwargs)
            except requests.Timeout:
                last = f"timed out after {self.timeout_s:g} s"
                continue
            except requests.RequestException as exc:
                last = f"connection failed ({type(exc).__name__})"
                continue
            if resp.status_code in RETRY_STATUSES:
                last = f"HTTP {resp.status_code}"
                retry_after = resp.headers.get("Retry-After", "")
                if retry_after.isdigit() and int(retry_after) <= 5:
                    time.sleep(int(retry_after))
                continue
            if resp.status_code in (401, 403):
                raise ProviderError(
                    f"{self.provider}: HTTP {resp.status_code}, credentials refused",
                    "check the API key / user and its permissions",
                )
            if resp.status_code >= 400:
                raise ProviderError(f"{self.provider}: HTTP {resp.status_code} from {path}")
            try:
                return resp.json()
            except ValueError:
                raise ProviderError(f"{self.provider}: malformed JSON from {path}") from None
        raise ProviderError(
            f"{self.provider}: {last} after {self.attempts} attempts",
            "the provider may be down or rate-limiting; try again later",
        )
