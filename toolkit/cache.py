"""The build cache behind `protogen serve`: generate once, import many times.

A spec is built into a package directory named after the protocol and a key:
the hash of the spec text, the protogen version, the templates' content and
the chosen handler base. Editing any of them yields a new key, so a stale build
is never imported. Builds are written to a temporary directory and renamed into
place, so concurrent `serve` processes never see a half-written package.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from ._version import __version__
from .models import ProtocolSpec

CACHE_ENV = "PROTOGEN_CACHE_DIR"
MODULE_KINDS = ("codec", "handler", "server", "client", "aio")


def cache_root() -> Path:
    """$PROTOGEN_CACHE_DIR, else $XDG_CACHE_HOME/protogen, else ~/.cache/protogen."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "protogen"


def _templates_digest(templates_dir: str | None) -> str:
    from .render import _default_templates_dir

    digest = hashlib.sha256()
    for directory in (templates_dir, _default_templates_dir()):
        if directory is None:
            continue
        for path in sorted(Path(directory).glob("*.j2")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def build_key(spec: ProtocolSpec, templates_dir: str | None = None) -> str:
    """A short hex key that changes whenever the generated code could."""
    digest = hashlib.sha256()
    for part in (
        spec.source_sha256,
        __version__,
        _templates_digest(templates_dir),
        spec.handler_base or "",
        spec.frame_base or "",
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def package_name(spec: ProtocolSpec, key: str) -> str:
    return f"protogen_{spec.name}_{key}"


def ensure_built(
    spec: ProtocolSpec, templates_dir: str | None = None
) -> tuple[Path, str]:
    """Build `spec` into the cache unless it is there; return (root, package name)."""
    from .generator import generate

    root = cache_root()
    package = package_name(spec, build_key(spec, templates_dir))
    target = root / package
    if (target / "__init__.py").is_file():
        return root, package
    root.mkdir(parents=True, exist_ok=True)
    outputs = generate(spec, templates_dir=templates_dir, package=package)
    staging = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=root))
    try:
        for name, source in outputs.items():
            (staging / name).write_text(source, encoding="utf-8")
        init = staging / "__init__.py"
        if not init.exists():
            init.write_text(
                f'"""protogen build cache of {spec.name}."""\n', encoding="utf-8"
            )
        try:
            os.rename(staging, target)
        except OSError:
            if not (
                target / "__init__.py"
            ).is_file():  # not a lost race: a real failure
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return root, package


def import_built(spec: ProtocolSpec, root: Path, package: str) -> dict[str, ModuleType]:
    """Import the cached modules; also alias them as `<name>_<kind>` when free.

    The aliases let a `--handler` module written against a `protogen build`
    output (`from echo_handler import EchoHandler`) run on the cached build.
    """
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    modules = {}
    for kind in MODULE_KINDS:
        module = importlib.import_module(f"{package}.{spec.name}_{kind}")
        modules[kind] = module
        sys.modules.setdefault(f"{spec.name}_{kind}", module)
    return modules


__all__ = ["cache_root", "build_key", "ensure_built", "import_built", "CACHE_ENV"]
