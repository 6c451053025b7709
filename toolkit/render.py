"""Render Jinja2 templates into (unformatted) Python source.

Templates come from an optional override directory first, then from the
`protogen.templates` package (by file name), so a user can replace a single
template - or a single `_*.j2` partial - and keep the rest.
"""

from __future__ import annotations

import importlib.resources
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jinja2

TEMPLATE_PACKAGE = "protogen.templates"


def _default_templates_dir() -> str:
    return str(importlib.resources.files(TEMPLATE_PACKAGE))


def default_template_names() -> list[str]:
    """File names of the built-in templates (`*.j2`), sorted."""
    root = importlib.resources.files(TEMPLATE_PACKAGE)
    return sorted(entry.name for entry in root.iterdir() if entry.name.endswith(".j2"))


def export_templates(directory: str | os.PathLike[str]) -> list[str]:
    """Copy the built-in templates into `directory` for editing; return their paths."""
    os.makedirs(directory, exist_ok=True)
    root = importlib.resources.files(TEMPLATE_PACKAGE)
    written = []
    for name in default_template_names():
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8", newline="\n") as out:
            out.write(root.joinpath(name).read_text(encoding="utf-8"))
        written.append(path)
    return written


# --- filters and tests -----------------------------------------------------------


def py_literal(value: Any) -> str:
    """A Python literal for ints (hex when large), bytes, strings, tuples, None, bools."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return hex(value) if value > 9 else repr(value)
    if isinstance(value, (bytes, str, float)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        items = ", ".join(py_literal(item) for item in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, (frozenset, set)):
        items = ", ".join(py_literal(item) for item in sorted(value))
        return f"frozenset({{{items}}})" if value else "frozenset()"
    raise TypeError(f"no Python literal for {value!r}")


def snake_case(name: str) -> str:
    """`RequestHeader` -> `request_header`, `HTTPRequest` -> `http_request`."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return name.lower()


def upper_snake(name: str) -> str:
    return snake_case(name).upper()


def camel_case(name: str) -> str:
    """`get_quiet` -> `GetQuiet`."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def py_set(values: Iterable[Any]) -> str:
    """A set display `{1, 2, 3}` (CPython folds `x in {...}` into a frozenset constant)."""
    return "{" + ", ".join(py_literal(v) for v in sorted(values)) + "}"


def py_str(value: Any) -> str:
    """A Python string literal holding the text of `value` (a literal's text, say)."""
    return repr(str(value))


def regex_alternation(delimiters: Iterable[bytes]) -> bytes:
    """A bytes regex matching any delimiter; leftmost-first = Netty's shortest frame."""
    return b"|".join(re.escape(d) for d in delimiters)


def decimal_head_regex(marker: bytes | None, separator: bytes) -> bytes:
    """A bytes regex for a well-formed decimal length prefix: the marker, a length
    without leading zeros (group 1), the separator (which holds no digit)."""
    return re.escape(marker or b"") + rb"([1-9][0-9]*|0)" + re.escape(separator)


def joined_args(items: Iterable[str]) -> str:
    """`a, b, c` - for argument lists built from lists of expressions."""
    return ", ".join(items)


def len_of(var: str) -> str:
    return f"len({var})"


def pack_expr(field_view: Any) -> str:
    """A field's encode-time Struct argument (see context.FieldView.pack_expr)."""
    return field_view.pack_expr()


def code_block(text: str, width: int) -> str:
    """Indent a macro's code by `width`; nothing at all (not even a newline) if empty."""
    lines = [line for line in str(text).strip("\n").splitlines()]
    if not any(line.strip() for line in lines):
        return ""
    pad = " " * width
    return "\n".join(pad + line for line in lines if line.strip()) + "\n"


def expr_source(expr: Any) -> str:
    """An IR expression as the spec wrote it (for messages)."""
    from .expressions import source

    return source(expr)


def isort_key(name: str) -> tuple[int, str]:
    """isort's order (as ruff checks it): CONSTANTS, then Classes, then names."""
    if name.isupper() and len(name) > 1:
        return 0, name
    return (1 if name[:1].isupper() else 2), name


def isorted(names: Iterable[str]) -> list[str]:
    return sorted(names, key=isort_key)


def zero_bytes(count: int) -> str:
    return py_literal(bytes(count))


FILTERS = {
    "py": py_literal,
    "snake": snake_case,
    "upper_snake": upper_snake,
    "camel": camel_case,
    "args": joined_args,
    "pyset": py_set,
    "pystr": py_str,
    "alternation": regex_alternation,
    "decimal_head": decimal_head_regex,
    "format_len": len_of,
    "pack_expr": pack_expr,
    "zeros": zero_bytes,
    "expr_source": expr_source,
    "isorted": isorted,
    "block": code_block,
}


def _is_bytes(value: Any) -> bool:
    return isinstance(value, bytes)


TESTS = {"bytes": _is_bytes}


def make_environment(
    templates_dir: str | os.PathLike[str] | None = None,
) -> jinja2.Environment:
    """The Jinja2 environment: override dir first, built-in templates after."""
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None:
        if not os.path.isdir(templates_dir):
            raise FileNotFoundError(f"templates directory not found: {templates_dir}")
        loaders.append(jinja2.FileSystemLoader(os.fspath(templates_dir)))
    loaders.append(jinja2.FileSystemLoader(_default_templates_dir()))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        extensions=["jinja2.ext.do"],
    )
    env.filters.update(FILTERS)
    env.tests.update(TESTS)
    return env


# One environment per override directory for the life of the process: Jinja2
# compiles each template once per environment (about half of what `generate`
# costs), and a process that generates several specs (`protogen build a b c`,
# a test session) would otherwise compile every template again for each.
# Jinja2's auto_reload recompiles a template whose file changed; the key holds
# the override directory's listing, so a template added there (which must now
# win over a built-in one already compiled) gets a fresh environment.
_ENVIRONMENTS: dict[tuple[str, ...] | None, jinja2.Environment] = {}


def shared_environment(
    templates_dir: str | os.PathLike[str] | None = None,
) -> jinja2.Environment:
    """make_environment(templates_dir), made once per directory (and content
    listing) per process."""
    key: tuple[str, ...] | None = None
    if templates_dir is not None:
        if not os.path.isdir(templates_dir):
            raise FileNotFoundError(f"templates directory not found: {templates_dir}")
        with os.scandir(templates_dir) as entries:
            listing = sorted(
                f"{entry.name}\0{entry.stat().st_mtime_ns}" for entry in entries
            )
        key = (os.path.abspath(templates_dir), *listing)
    env = _ENVIRONMENTS.get(key)
    if env is None:
        env = _ENVIRONMENTS[key] = make_environment(templates_dir)
    return env


def template_exists(env: jinja2.Environment, name: str) -> bool:
    try:
        env.get_template(name)
    except jinja2.TemplateNotFound:
        return False
    return True


def render_module(
    template_name: str,
    context: Mapping[str, Any],
    env: jinja2.Environment | None = None,
) -> str:
    """Render one module template with `context`; returns unformatted source."""
    environment = env if env is not None else make_environment()
    return environment.get_template(template_name).render(**context)
