"""Which of the runtime's hot modules load as C extensions (compiled mode).

`protogen compile-runtime` (needs the `compiled` extra: Cython and a C
compiler) compiles the modules every read event runs through into extensions
beside their sources (or into $PROTOGEN_COMPILED_DIR) and writes `compiled.json`
there: each module's source hash. This module's finder, installed when
`protogen.runtime` is imported, loads an extension only while its recorded hash
matches the source next to it, so an edited source is never shadowed by a stale
build; everything else is the pure-Python source, which always works.
PROTOGEN_COMPILED=0 forces pure Python.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

PACKAGE = "protogen.runtime"
# The modules a read event runs through, in import order (leaves first).
HOT_MODULES = ("buffer", "poller", "inbound", "outbound", "conn", "eventloop")
STAMP = "compiled.json"
ENABLE_ENV = "PROTOGEN_COMPILED"
DIR_ENV = "PROTOGEN_COMPILED_DIR"
SOURCE_DIR = Path(__file__).resolve().parent


def enabled() -> bool:
    """False when PROTOGEN_COMPILED=0 (or "no", "false", "off") forces pure Python."""
    value = os.environ.get(ENABLE_ENV, "1").strip().lower()
    return value not in ("0", "no", "false", "off")


def compiled_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or SOURCE_DIR)


def source_hash(leaf: str) -> str:
    return hashlib.sha256((SOURCE_DIR / f"{leaf}.py").read_bytes()).hexdigest()


def read_stamp(directory: Path) -> dict[str, Any]:
    try:
        stamp = json.loads((directory / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def usable_extensions(directory: Path | None = None) -> dict[str, Path]:
    """leaf -> extension path, for each hot module whose build matches its source."""
    directory = directory or compiled_dir()
    stamp = read_stamp(directory)
    if stamp.get("cache_tag") != sys.implementation.cache_tag:
        return {}
    modules = stamp.get("modules")
    if not isinstance(modules, dict):
        return {}
    cimports = stamp.get("cimports")
    cimports = cimports if isinstance(cimports, dict) else {}
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    found = {}
    for leaf in HOT_MODULES:  # (leaves first)
        path = directory / f"{leaf}{suffix}"
        # An extension typed with another hot module's extension types (Conn's
        # outbound is an Outbound) imports only beside that module's extension.
        needs = cimports.get(leaf, ())
        if (
            modules.get(leaf) == source_hash(leaf)
            and path.is_file()
            and all(other in found for other in needs)
        ):
            found[leaf] = path
    return found


class HotModuleFinder(importlib.abc.MetaPathFinder):
    """Decides, for each hot module, between its extension and its source."""

    def __init__(self) -> None:
        self._extensions: dict[str, Path] | None = None

    def extensions(self) -> dict[str, Path]:
        if self._extensions is None:
            self._extensions = usable_extensions() if enabled() else {}
        return self._extensions

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, leaf = fullname.rpartition(".")
        if package != PACKAGE or leaf not in HOT_MODULES:
            return None
        extension = self.extensions().get(leaf)
        if extension is not None:
            loader: Any = importlib.machinery.ExtensionFileLoader(
                fullname, str(extension)
            )
            return importlib.util.spec_from_file_location(
                fullname, extension, loader=loader
            )
        # The source, explicitly: an extension beside it may be stale.
        source = SOURCE_DIR / f"{leaf}.py"
        return importlib.util.spec_from_file_location(
            fullname,
            source,
            loader=importlib.machinery.SourceFileLoader(fullname, str(source)),
        )


def install() -> None:
    """Put the finder first on sys.meta_path (once)."""
    if not any(isinstance(finder, HotModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, HotModuleFinder())


def is_compiled(module: ModuleType) -> bool:
    path = getattr(module, "__file__", None) or ""
    return path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def status() -> dict[str, bool]:
    """Hot module name -> loaded from a C extension (importing them if needed)."""
    result = {}
    for leaf in HOT_MODULES:
        module = importlib.import_module(f"{PACKAGE}.{leaf}")
        result[leaf] = is_compiled(module)
    return result


__all__ = ["HOT_MODULES", "enabled", "install", "is_compiled", "status"]
