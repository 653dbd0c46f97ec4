"""The CI workflow `gpuplan init` writes (templates/ci/gpuplan.yml.j2), and what it installs.

The workflow installs the gpuplan the user actually runs: the same index release, or the same
VCS commit. A gpuplan installed from a local folder cannot be installed in CI; the user then
names what to install ([ci] install in gpuplan.toml, passed here as ``install``).
"""

from __future__ import annotations

import json
import re
from importlib import metadata

from infra.render import render
from infra.versions import BASE_REQUIREMENTS
from planner.errors import UsageError, short


def installed_spec(dist: str = "gpuplan") -> str:
    """A pip requirement for the installed gpuplan (PEP 610 direct_url.json tells how it was
    installed): `gpuplan==X` from an index, `gpuplan @ git+URL@COMMIT` from a VCS."""
    distribution = metadata.distribution(dist)
    raw = distribution.read_text("direct_url.json")
    if not raw:
        return f"{dist}=={distribution.version}"
    info = json.loads(raw)
    vcs = info.get("vcs_info")
    if vcs and vcs.get("commit_id"):
        return f"{dist} @ {vcs['vcs']}+{info['url']}@{vcs['commit_id']}"
    if info.get("url", "").startswith(("http://", "https://")) and "dir_info" not in info:
        return f"{dist} @ {info['url']}"
    raise UsageError(
        f"{dist} is installed from a local folder ({info.get('url', '?')}), which CI cannot "
        "install",
        "give what CI should pip install: --ci-install (or [deploy].ci_install in "
        "gpuplan.toml), e.g. 'gpuplan @ git+https://github.com/ORG/gpuplan@COMMIT'",
    )


def render_workflow(out: str, stack: str, install: str | None = None) -> str:
    """The workflow text. ``install``: the pip requirement CI installs (default: what is
    installed here, see installed_spec)."""
    spec = install or installed_spec()
    if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+\s*(==|@)\s*\S+", spec):
        raise UsageError(
            f"ci_install '{short(spec, 60)}' is not a pip requirement", "e.g. gpuplan==0.2.0"
        )
    pulumi_version = BASE_REQUIREMENTS["pulumi"]
    return render(
        "ci/gpuplan.yml.j2", out=out, stack=stack, install=spec, pulumi_version=pulumi_version
    )
