"""The generator pipeline: IR -> context -> render (Jinja2) -> format (black) -> write.

Parsing (spec text -> IR) lives in `parser.py`; this module starts from a
validated `ProtocolSpec`. Output is deterministic: the same spec and templates
always give byte-identical files (no timestamps, no dict-order surprises, no
absolute paths).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

from . import models as ir
from .context import build_context
from .format import format_source
from .render import render_module, shared_environment, template_exists


@dataclass(frozen=True)
class ModuleTemplate:
    template: str  # template file name
    output: str  # output file name pattern, `{name}` is the protocol name
    required: bool  # a missing template is an error (else the module is skipped)


MODULE_TEMPLATES: tuple[ModuleTemplate, ...] = (
    ModuleTemplate("codec.py.j2", "{name}_codec.py", True),
    ModuleTemplate("handler.py.j2", "{name}_handler.py", False),
    ModuleTemplate("server.py.j2", "{name}_server.py", False),
    ModuleTemplate("client.py.j2", "{name}_client.py", False),
    ModuleTemplate("aio.py.j2", "{name}_aio.py", False),
)
TEST_TEMPLATES: tuple[ModuleTemplate, ...] = (
    ModuleTemplate("properties.py.j2", "test_{name}_properties.py", False),
)


# Optional imports of the codec template: imported only when the module uses them.
IMPORT_USES = {
    name: re.compile(pattern)
    for name, pattern in {
        "enum": r"\benum\.IntEnum\b",
        "re": r"\bre\.compile\(",
        "islice": r"\bislice\(",
        "struct": r"\bstruct\.\w+\b",
        "zlib": r"\bzlib\.\w+\(",
        "wire": r"\bwire\.\w+\b",
        "Any": r"\bAny\b",
        "Buffer": r"\bBuffer\b",
        "ChecksumMismatch": r"\bChecksumMismatch\b",
        "ConstraintViolation": r"\bConstraintViolation\b",
        "FrameTooLarge": r"\bFrameTooLarge\b",
        "InvalidValue": r"\bInvalidValue\b",
        "MalformedFrame": r"\bMalformedFrame\b",
        "ProtocolError": r"\bProtocolError\b",
        "assume": r"\bassume\(",
        "reject": r"\breject\(",
    }.items()
}


_IDENTIFIER = re.compile(r"\b[A-Za-z_]\w*\b")


def used_imports(source: str) -> set[str]:
    """What `source` (rendered without optional imports) uses: the modules of
    IMPORT_USES, and every other identifier (names imported from the codec)."""
    used = {name for name, pattern in IMPORT_USES.items() if pattern.search(source)}
    modules = {"enum", "re", "struct", "zlib", "wire", "Any"}
    return used | (set(_IDENTIFIER.findall(source)) - modules)


def output_names(spec: ir.ProtocolSpec, *, with_tests: bool = False) -> list[str]:
    """The file names `generate` produces for `spec` (when every template exists)."""
    templates = MODULE_TEMPLATES + (TEST_TEMPLATES if with_tests else ())
    return [t.output.format(name=spec.name) for t in templates]


def generate(
    spec: ir.ProtocolSpec,
    *,
    templates_dir: str | os.PathLike[str] | None = None,
    package: str | None = None,
    with_tests: bool = False,
    frame_base: str | None = None,
) -> dict[str, str]:
    """Render and format every module for `spec`: {output file name: source}.

    `templates_dir` overrides built-in templates by file name; `package` makes
    the generated modules import each other as `package.module`; `frame_base`
    ("module:Class") overrides the spec's `frame_base`. Optional module templates
    (handler, server, client, properties) that do not exist are skipped.
    """
    env = shared_environment(templates_dir)
    context = build_context(spec, package=package, frame_base=frame_base)
    templates = MODULE_TEMPLATES + (TEST_TEMPLATES if with_tests else ())
    outputs: dict[str, str] = {}
    for module in templates:
        if not module.required and not template_exists(env, module.template):
            continue
        filename = module.output.format(name=spec.name)
        # First without optional imports, to see which names the code uses.
        bare = render_module(module.template, {**context, "imports": set()}, env)
        imports = used_imports(bare)
        source = render_module(module.template, {**context, "imports": imports}, env)
        outputs[filename] = format_source(source, filename)
    return outputs


def write_outputs(
    outputs: Mapping[str, str], out_dir: str | os.PathLike[str]
) -> list[str]:
    """Write each module into `out_dir` (created if needed); returns the paths.

    Each file is written to a temporary name and renamed, so a reader never sees
    a half-written module.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for filename in sorted(outputs):
        path = os.path.join(out_dir, filename)
        fd, tmp_path = tempfile.mkstemp(
            dir=out_dir, prefix=f".{filename}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
                out.write(outputs[filename])
            os.replace(tmp_path, path)
        except BaseException:
            if os.path.exists(tmp_path):
                os.unlink(tmp_path)
            raise
        paths.append(path)
    return paths
