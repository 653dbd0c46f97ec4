"""The one Jinja2 environment for generated projects, and the quoting filters.

Values reach generated Python only through ``py`` (a Python literal, deterministic: sorted
keys) or, inside a docstring, ``pydoc``; YAML only through ``yaml`` (a JSON scalar, which YAML
reads back unchanged) and shell text only through ``sh`` (shlex.quote). Templates never splice
a raw value into code.
"""

from __future__ import annotations

import json
import shlex
from functools import cache
from importlib import resources
from typing import Any

from planner.errors import DeployError


def py_literal(value: Any) -> str:
    """Python source for a JSON-like value; str/int/float/bool/None, lists and dicts only."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ", ".join(f"{py_literal(str(k))}: {py_literal(v)}" for k, v in items) + "}"
    raise DeployError(f"cannot render a {type(value).__name__} into generated code")


def py_doc(value: Any) -> str:
    """A string shown inside a generated module's triple-double-quoted docstring: its Python
    literal (one printable line) with every double quote escaped, so no value can close the
    docstring (a model id of three quotes did) and the file always parses."""
    return repr(str(value)).replace('"', '\\"')


def py_block(value: dict[str, Any], indent: int = 4) -> str:
    """A dict literal over several lines (one key a line; long lists one item a line) for
    readable generated programs."""
    pad = " " * indent
    lines = []
    for k, v in sorted(value.items()):
        text = f"{pad}{py_literal(str(k))}: {py_literal(v)},"
        if isinstance(v, list) and len(text) > 99:
            items = "".join(f"{pad * 2}{py_literal(item)},\n" for item in v)
            text = f"{pad}{py_literal(str(k))}: [\n{items}{pad}],"
        lines.append(text)
    return "{\n" + "\n".join(lines) + "\n}"


def yaml_scalar(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def sh_quote(value: Any) -> str:
    return shlex.quote(str(value))


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#"})


def md_text(value: Any) -> str:
    """A value for Markdown text and code spans in generated READMEs: control characters
    (ANSI escapes, newlines) shown escaped, Markdown's active characters backslash-escaped, so
    a hostile model id cannot add links, headings or raw HTML, or break out of a code span."""
    s = str(value)
    s = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)
    return s.translate(_MD_SPECIAL)


def md_code(value: Any) -> str:
    """A value inside a Markdown code span: control characters escaped, and no backtick (which
    would end the span) - it is shown as a quote instead."""
    s = str(value)
    s = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)
    return s.replace("`", "'")


@cache
def environment() -> Any:
    import jinja2

    root = resources.files("gpuplan_templates")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        py=py_literal, pydoc=py_doc, py_block=py_block, yaml=yaml_scalar, sh=sh_quote,
        md=md_text, mdc=md_code,
    )  # fmt: skip
    from infra.versions import GITHUB_ACTIONS

    env.globals["github_actions"] = GITHUB_ACTIONS
    return env


def render(template: str, **context: Any) -> str:
    import jinja2

    try:
        return environment().get_template(template).render(**context)
    except jinja2.UndefinedError as exc:
        raise DeployError(f"template {template}: {exc.message}") from None


def static_file(name: str) -> str:
    """A file copied verbatim into generated projects (no templating)."""
    return resources.files("gpuplan_templates").joinpath(name).read_text("utf-8")
