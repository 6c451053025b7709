"""Compiled mode: Python modules turned into C extensions by Cython 3.

The generated codec and handler modules (and the runtime's hot modules, see
`protogen.runtime.compiled`) are plain typed Python. Cython compiles the same
`.py` files in pure-Python mode: the annotations guide it, nothing else changes,
and the pure module always works where no C compiler is.

Each extension is built once per content: the key hashes the source, the
module's dotted name, the Cython version, the interpreter's ABI and the compiler
directives. Builds live under `<cache>/compiled/<key>/` (see `cache.cache_root`)
and are copied beside the `.py` (as `name.cpython-311-x86_64-linux-gnu.so`),
where Python's import system prefers them to the source.

The figures behind the choice of Cython (and not mypyc) are in docs/compiled.md.
"""

from __future__ import annotations

import ast
import contextlib
import filecmp
import hashlib
import json
import importlib
import importlib.machinery
import importlib.util
import io
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Iterator, Mapping

INSTALL_HINT = "pip install 'protogen-toolkit[compiled]'"

# Cython directives for every compiled module. The code is ordinary Python and
# keeps Python's semantics: annotations are for mypy, not checked by Cython
# (a zero-copy frame field annotated `bytes` holds a memoryview during its
# callback; Cython would reject it), and indexing keeps its meaning.
DIRECTIVES: dict[str, Any] = {
    "language_level": 3,
    "annotation_typing": False,
    "binding": True,  # functions keep __name__, __doc__, signatures (help, inspect)
    "embedsignature": False,
}
CFLAGS = ("-O2", "-g0")
# Changes whenever _build's way of building changes (part of the cache key).
BUILD_FORMAT = "2"


class CompileError(Exception):
    """Compiled mode is not available here, or a module failed to compile."""


def extension_suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def check_toolchain() -> None:
    """Raise CompileError saying what is missing for compiled mode, if anything."""
    try:
        import Cython  # noqa: F401
    except ModuleNotFoundError:
        raise CompileError(
            f"compiled mode needs Cython 3, which is not installed: {INSTALL_HINT}"
        ) from None
    import Cython

    if int(Cython.__version__.split(".")[0]) < 3:
        raise CompileError(
            f"compiled mode needs Cython 3, found {Cython.__version__}: {INSTALL_HINT}"
        )
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(os.environ.get("CC", compiler).split()[0]) is None:
        raise CompileError(
            f"compiled mode needs a C compiler ({compiler!r} not found on PATH): "
            "install gcc or clang, or build without --compile"
        )
    include = sysconfig.get_paths()["include"]
    if not os.path.isfile(os.path.join(include, "Python.h")):
        raise CompileError(
            f"compiled mode needs the Python headers ({include}/Python.h is missing): "
            "install python3-dev (or your platform's equivalent)"
        )


def build_key(source: bytes, module_name: str) -> str:
    """A hex key that changes whenever the extension could."""
    import Cython

    digest = hashlib.sha256()
    for part in (
        source,
        module_name.encode(),
        Cython.__version__.encode(),
        sys.implementation.cache_tag.encode(),
        extension_suffix().encode(),
        repr(sorted(DIRECTIVES.items())).encode(),
        " ".join(CFLAGS).encode(),
        BUILD_FORMAT.encode(),
    ):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:24]


def slot_classes_pxd(
    text: str,
    module_name: str = "",
    cimportable: Mapping[str, Iterable[str]] | None = None,
    cpdef: Iterable[str] = (),
) -> str:
    """A Cython augmenting `.pxd` making the module's slotted classes extension
    types ("" when it has none), and its functions named in `cpdef` (those
    another compiled module calls per frame: a codec's encoders) `cpdef`, which
    a module cimporting them calls as C functions.

    A class qualifies when its `__slots__` is a literal tuple of names and its
    bases (if any) qualify too: the frame classes, their `FrameBase`, the
    decoders and readers of a generated codec. As extension types their fields
    are C struct members: construction and attribute access skip the generic
    attribute machinery. The `.py` stays the same plain Python.

    A field is typed with its class (not `object`) when the module's only
    assignment to it is `self.NAME = Cls(...)` in `__init__`, Cls an extension
    type of this module or of a module in `cimportable` (dotted name -> the
    classes its own `.pxd` declares) that this one imports it from: code
    reading `conn.outbound.size` then reads C struct members all the way
    instead of looking `size` up by name (Conn.write does this per frame).
    """
    tree = ast.parse(text)
    external = _imported_extension_types(tree, module_name, cimportable or {})
    assigned = _attribute_assignments(tree)
    declared: list[str] = []
    lines: list[str] = []
    cimports: dict[str, list[str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or node.decorator_list or node.keywords:
            continue
        bases = [base.id for base in node.bases if isinstance(base, ast.Name)]
        if len(bases) != len(node.bases) or not all(b in declared for b in bases):
            continue
        slots = _literal_slots(node)
        if slots is None:
            continue
        built = _constructed_in_init(node)
        declared.append(node.name)
        parents = f"({', '.join(bases)})" if bases else ""
        lines.append(f"cdef class {node.name}{parents}:")
        for name in slots:
            kind = built.get(name)
            if kind is None or assigned.get(name) != 1:
                kind = "object"
            elif kind in external:
                if kind not in cimports.setdefault(external[kind], []):
                    cimports[external[kind]].append(kind)
            elif kind not in declared or kind == node.name:
                kind = "object"  # (declared later, or itself: keep it simple)
            lines.append(f"    cdef public {kind} {name}")
        if not slots:
            lines.append("    pass")
        lines.append("")
    wanted = set(cpdef)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in wanted:
            params = _plain_parameters(node)
            if params is not None:
                lines += [f"cpdef {node.name}({', '.join(params)})", ""]
    header = [
        f"from {module} cimport {', '.join(names)}"
        for module, names in sorted(cimports.items())
    ]
    return "\n".join(header + ([""] if header else []) + lines)


def _plain_parameters(node: ast.FunctionDef) -> list[str] | None:
    """A module function's parameters as a `.pxd` declares them (`name` or
    `name=*`), or None when it cannot be cpdef as it is (decorated, *args,
    keyword-only or positional-only parameters)."""
    args = node.args
    if node.decorator_list or args.vararg or args.kwarg or args.kwonlyargs:
        return None
    if args.posonlyargs:
        return None
    names = [arg.arg for arg in args.args]
    first_default = len(names) - len(args.defaults)
    return [
        f"{name}=*" if index >= first_default else name
        for index, name in enumerate(names)
    ]


def imports_pxd(text: str, module_name: str, cimportable: Mapping[str, str]) -> str:
    """`from MODULE cimport ...` for every name the module imports from a module
    in `cimportable` (dotted name -> its `.pxd`) that that `.pxd` declares: a
    generated handler calls its codec's cpdef encoders as C functions and
    builds its frames with the extension types' own constructors."""
    tree = ast.parse(text)
    package = module_name.rpartition(".")[0]
    lines = []
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or node.module is None:
            continue
        source = _absolute(node, package)
        pxd = cimportable.get(source)
        if not pxd:
            continue
        declared = set(pxd_classes(pxd)) | set(pxd_functions(pxd))
        names = [
            alias.name
            for alias in node.names
            if alias.asname is None and alias.name in declared
        ]
        if names:
            lines.append(f"from {source} cimport {', '.join(names)}")
    return "\n".join(lines) + ("\n" if lines else "")


def pxd_functions(pxd: str) -> list[str]:
    """The cpdef functions a `.pxd` from slot_classes_pxd declares."""
    return [
        line.split()[1].partition("(")[0]
        for line in pxd.splitlines()
        if line.startswith("cpdef ")
    ]


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """The dotted name a `from ... import` imports from."""
    if not node.level:
        return node.module or ""
    base = package.split(".") if package else []
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join([*base, node.module or ""])


def pxd_classes(pxd: str) -> list[str]:
    """The extension types a `.pxd` from slot_classes_pxd declares."""
    return [
        line.split()[2].partition("(")[0].rstrip(":")
        for line in pxd.splitlines()
        if line.startswith("cdef class ")
    ]


def _imported_extension_types(
    tree: ast.Module, module_name: str, cimportable: Mapping[str, Iterable[str]]
) -> dict[str, str]:
    """Class name -> module, for each extension type the module imports by
    `from MODULE import NAME` (relative or absolute) from a module in
    `cimportable` that declares it."""
    package = module_name.rpartition(".")[0]
    found = {}
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or node.module is None:
            continue
        source = _absolute(node, package)
        classes = set(cimportable.get(source, ()))
        for alias in node.names:
            if alias.asname is None and alias.name in classes:
                found[alias.name] = source
    return found


def _attribute_assignments(tree: ast.Module) -> dict[str, int]:
    """Attribute name -> how many `X.NAME = ...` (or augmented) assignments the
    module makes, on any object."""
    counts: dict[str, int] = {}
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for item in ast.walk(target):
                if isinstance(item, ast.Attribute):
                    counts[item.attr] = counts.get(item.attr, 0) + 1
    return counts


def _constructed_in_init(node: ast.ClassDef) -> dict[str, str]:
    """Attribute -> class name, for each `self.NAME = Cls(...)` in `__init__`."""
    found = {}
    for statement in node.body:
        if isinstance(statement, ast.FunctionDef) and statement.name == "__init__":
            for item in statement.body:
                if (
                    isinstance(item, ast.Assign)
                    and len(item.targets) == 1
                    and isinstance(item.targets[0], ast.Attribute)
                    and isinstance(item.targets[0].value, ast.Name)
                    and item.targets[0].value.id == "self"
                    and isinstance(item.value, ast.Call)
                    and isinstance(item.value.func, ast.Name)
                ):
                    found[item.targets[0].attr] = item.value.func.id
    return found


def _literal_slots(node: ast.ClassDef) -> list[str] | None:
    for statement in node.body:
        if (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
            and statement.targets[0].id == "__slots__"
        ):
            value = statement.value
            names = []
            if isinstance(value, ast.Tuple):
                for element in value.elts:
                    if not isinstance(element, ast.Constant):
                        return None
                    if not isinstance(element.value, str):
                        return None
                    names.append(element.value)
                return names
            return None
    return None


def compile_module(
    source: Path,
    module_name: str,
    out_dir: Path | None = None,
    *,
    extension_types: bool = False,
    cimportable: Mapping[str, str] | None = None,
    cpdef: Iterable[str] = (),
    cimport_imports: bool = False,
) -> Path:
    """Compile `source` (importable as `module_name`) into an extension in
    `out_dir` (default: beside the source); returns the extension's path.

    With `extension_types`, its slotted classes become extension types (see
    slot_classes_pxd; `cimportable` maps the modules whose extension types its
    fields may have to their `.pxd`); should Cython refuse that, the module is
    compiled without. `cpdef` names the functions made cpdef; with
    `cimport_imports`, what it imports from a module in `cimportable` that is
    declared there is cimported (imports_pxd). A build of the same content is
    reused from the cache.
    """
    source = Path(source)
    out_dir = Path(out_dir) if out_dir is not None else source.parent
    cached = cached_extension(
        source,
        module_name,
        extension_types=extension_types,
        cimportable=cimportable,
        cpdef=cpdef,
        cimport_imports=cimport_imports,
    )
    target = out_dir / cached.name
    out_dir.mkdir(parents=True, exist_ok=True)
    if target.is_file() and filecmp.cmp(cached, target, shallow=False):
        return target  # (a loaded extension is not replaced for nothing)
    # Copied under a temporary name, then renamed: an importer never sees half.
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(cached, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def cached_extension(
    source: Path,
    module_name: str,
    *,
    extension_types: bool = False,
    cimportable: Mapping[str, str] | None = None,
    cpdef: Iterable[str] = (),
    cimport_imports: bool = False,
) -> Path:
    """The extension of `source` (importable as `module_name`) in the build
    cache, built first unless a build of the same content is there. The
    `.pxd` it was built with is recorded beside it (built_pxd)."""
    from .cache import cache_root

    check_toolchain()
    source = Path(source)
    leaf = module_name.rpartition(".")[2]
    text = source.read_bytes()
    pxd = ""
    used: dict[str, str] = {}
    if extension_types:
        pxd = module_pxd(text.decode("utf-8"), module_name, cimportable, cpdef)
    if cimport_imports and cimportable:
        pxd = imports_pxd(text.decode("utf-8"), module_name, cimportable) + pxd
    if pxd:
        used = {
            name: text_of
            for name, text_of in (cimportable or {}).items()
            if f"from {name} cimport " in pxd
        }
    # The cimported modules' .pxd are part of the build: their struct layout is
    # compiled into this extension.
    content = [text, pxd.encode()] + [
        f"{name}\0{used[name]}".encode() for name in sorted(used)
    ]
    key = build_key(b"\0".join(content), module_name)
    cached = cache_root() / "compiled" / key / f"{leaf}{extension_suffix()}"
    record = cached.with_name(f"{leaf}.pxd")  # written last: the build is whole
    if record.is_file() and cached.is_file():
        return cached
    # Processes building the same module at once (two `serve --compile` of
    # one spec, parallel test workers) wait for the first instead of each
    # spending a minute in the C compiler on the same file.
    cached.parent.mkdir(parents=True, exist_ok=True)
    with _locked(cached.parent / ".lock"):
        if not (record.is_file() and cached.is_file()):
            try:
                _build(source, module_name, cached, pxd, used)
            except CompileError:
                if not pxd:
                    raise
                pxd = ""
                _build(source, module_name, cached, "")
            _write_atomic(record, pxd)
    return cached


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if needed) while inside."""
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def built_pxd(cached: Path) -> str:
    """The `.pxd` the cached extension `cached` was built with ("" for none,
    or when Cython refused it and the module was compiled without)."""
    leaf = cached.name.partition(".")[0]
    try:
        return cached.with_name(f"{leaf}.pxd").read_text(encoding="utf-8")
    except OSError:
        return ""


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)


def module_pxd(
    text: str,
    module_name: str,
    cimportable: Mapping[str, str] | None = None,
    cpdef: Iterable[str] = (),
) -> str:
    """slot_classes_pxd of a module, its fields typed with the extension types
    of the modules in `cimportable` (dotted name -> their `.pxd`)."""
    classes = {name: pxd_classes(pxd) for name, pxd in (cimportable or {}).items()}
    return slot_classes_pxd(text, module_name, classes, cpdef)


def import_compiled(module_name: str) -> ModuleType | None:
    """Import the user's module `module_name` from an extension compiled from
    its source, into the build cache (nothing is written beside the source).

    Returns the module, or None when it is already imported, is no `.py` file
    on sys.path, or is a package. Raises CompileError when the toolchain is
    missing or Cython refuses the module; the caller then imports it as usual.
    """
    if module_name in sys.modules:
        return None
    parent = module_name.rpartition(".")[0]
    if parent:
        importlib.import_module(parent)
    spec = importlib.util.find_spec(module_name)
    origin = spec.origin if spec is not None else None
    if (
        spec is None
        or origin is None
        or not origin.endswith(".py")
        or spec.submodule_search_locations is not None
    ):
        return None
    extension = cached_extension(Path(origin), module_name)
    loader = importlib.machinery.ExtensionFileLoader(module_name, str(extension))
    compiled = importlib.util.spec_from_file_location(
        module_name, extension, loader=loader
    )
    assert compiled is not None
    module = importlib.util.module_from_spec(compiled)
    # The module's code sees its source's path, as it would uncompiled: a
    # handler finding files beside itself (`Path(__file__).parent`) must not
    # look for them in the build cache.
    module.__file__ = origin
    sys.modules[module_name] = module
    try:
        loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def compile_modules(
    modules: Iterable[tuple[Path, str]], out_dir: Path | None = None
) -> list[Path]:
    """compile_module for each (source, module name) of generated code: the
    codecs' slotted classes become extension types, the encoders their handler
    imports cpdef functions, and the handler cimports both, so that its
    `send` calls the encoder as a C function (generated_modules lists a
    protocol's codec before its handler)."""
    built = []
    codecs: dict[str, str] = {}  # codec module -> the .pxd it was built with
    for source, name in modules:
        if name.endswith("_codec"):
            handler = Path(source).with_name(
                Path(source).name.replace("_codec.py", "_handler.py")
            )
            wanted = _imported_names(handler, name) if handler.is_file() else []
            built.append(
                compile_module(
                    source, name, out_dir, extension_types=True, cpdef=wanted
                )
            )
            cached = cached_extension(source, name, extension_types=True, cpdef=wanted)
            codecs[name] = built_pxd(cached)
        else:
            # (A handler cimports only from its codec's build as it is: one
            # Cython refused is cimported from by no one.)
            built.append(
                compile_module(
                    source, name, out_dir, cimportable=codecs, cimport_imports=True
                )
            )
    return built


def _imported_names(source: Path, from_module: str) -> list[str]:
    """The names the module at `source` imports from `from_module`."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    package = from_module.rpartition(".")[0]
    names = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            if _absolute(node, package) == from_module:
                names += [alias.name for alias in node.names if alias.asname is None]
    return names


def _build(
    source: Path,
    module_name: str,
    cached: Path,
    pxd: str,
    cimported: Mapping[str, str] | None = None,
) -> None:
    """Cythonize and compile in a scratch directory, then move into the cache."""
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    leaf = module_name.rpartition(".")[2]
    cached.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".build-{leaf}-", dir=cached.parent))
    try:
        # The source is copied under its own name inside its packages (each with
        # an __init__.py): Cython derives the module's qualified name, and where
        # it looks for the augmenting .pxd, from that layout.
        *packages, leaf = module_name.split(".")
        home = scratch.joinpath("src", *packages)
        home.mkdir(parents=True)
        for depth in range(len(packages)):
            scratch.joinpath("src", *packages[: depth + 1], "__init__.py").touch()
        copy = home / f"{leaf}.py"
        shutil.copyfile(source, copy)
        if pxd:
            (home / f"{leaf}.pxd").write_text(pxd, encoding="utf-8")
        for name, text in (cimported or {}).items() if pxd else ():
            *parts, other = name.split(".")
            place = scratch.joinpath("src", *parts)
            place.mkdir(parents=True, exist_ok=True)
            for depth in range(len(parts)):
                scratch.joinpath("src", *parts[: depth + 1], "__init__.py").touch()
            (place / f"{other}.pxd").write_text(text, encoding="utf-8")
        extension = Extension(module_name, [str(copy)], extra_compile_args=list(CFLAGS))
        # Cython prints its diagnostics (naming the scratch copy): kept, to
        # name the user's file instead and to say why a module was refused.
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):
                extensions = cythonize(
                    [extension],
                    compiler_directives=DIRECTIVES,
                    build_dir=str(scratch / "c"),
                    include_path=[str(scratch / "src")],
                    quiet=True,
                    force=True,
                )
        except Exception:  # Cython's CompileError and friends
            errors = [
                f"line {where}" for where in _diagnostics(said.getvalue(), scratch)
            ]
            reason = "; ".join(errors[:3]) or said.getvalue().strip()[-500:]
            raise CompileError(f"{source}: Cython failed: {reason}") from None
        for where in _diagnostics(said.getvalue(), scratch):
            print(f"warning: {source}:{where}", file=sys.stderr)
        dist = Distribution({"name": leaf, "ext_modules": extensions})
        command = build_ext(dist)
        command.build_lib = str(scratch / "lib")
        command.build_temp = str(scratch / "tmp")
        command.ensure_finalized()
        try:
            command.run()
        except Exception as error:  # distutils CompileError, LinkError
            raise CompileError(f"{source}: C compilation failed: {error}") from None
        built = Path(command.get_ext_fullpath(module_name))
        os.replace(built, cached)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _diagnostics(text: str, scratch: Path) -> list[str]:
    """Cython's `FILE:LINE:COL: message` lines about the scratch copy, as
    `LINE:COL: message` (Cython names the copy relative to the working
    directory or not)."""
    marker = f"{scratch.name}{os.sep}src{os.sep}"
    found = []
    for line in text.splitlines():
        if marker in line:
            where = line.partition(marker)[2].partition(".py:")[2]
            if where:
                found.append(where.strip())
    return found


def generated_modules(
    directory: Path, protocol: str, package: str | None
) -> list[tuple[Path, str]]:
    """(source, module name) of the generated modules compiled mode compiles:
    the codec and the handler, the ones every frame runs through."""
    found = []
    for kind in ("codec", "handler"):
        source = directory / f"{protocol}_{kind}.py"
        if source.is_file():
            name = f"{protocol}_{kind}"
            found.append((source, f"{package}.{name}" if package else name))
    return found


def compile_runtime(out_dir: Path | None = None) -> list[Path]:
    """Compile the runtime's hot modules (`protogen.runtime.compiled.HOT_MODULES`)
    into `out_dir` (default: beside their sources) and record their source
    hashes there, which is what lets `protogen.runtime` load them."""
    from protogen.runtime import compiled

    directory = Path(out_dir) if out_dir is not None else compiled.SOURCE_DIR
    built = []
    hashes = {}
    pxds: dict[str, str] = {}
    needs: dict[str, list[str]] = {}
    for leaf in compiled.HOT_MODULES:  # (leaves first: what a module cimports is built)
        source = compiled.SOURCE_DIR / f"{leaf}.py"
        # Their slotted classes (Conn, Inbound, Outbound, EventLoop, ...) become
        # extension types, as a codec's frames do; a field holding another hot
        # module's extension type (Conn.outbound) is typed with it.
        name = f"{compiled.PACKAGE}.{leaf}"
        pxd = module_pxd(source.read_text(encoding="utf-8"), name, pxds)
        built.append(
            compile_module(
                source, name, directory, extension_types=True, cimportable=pxds
            )
        )
        pxds[name] = pxd
        needs[leaf] = [
            other.rpartition(".")[2]
            for other in pxds
            if f"from {other} cimport " in pxd
        ]
        hashes[leaf] = compiled.source_hash(leaf)
    stamp = {
        "cache_tag": sys.implementation.cache_tag,
        "modules": hashes,
        # An extension that cimports another hot module's types loads only
        # with that module's extension (compiled.usable_extensions).
        "cimports": {leaf: deps for leaf, deps in needs.items() if deps},
    }
    fd, tmp = tempfile.mkstemp(
        dir=directory, prefix=f".{compiled.STAMP}.", suffix=".tmp"
    )
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(stamp, out, indent=2, sort_keys=True)
        out.write("\n")
    os.replace(tmp, directory / compiled.STAMP)
    return built


def is_compiled(module: Any) -> bool:
    """True when `module` was loaded from a C extension."""
    path = getattr(module, "__file__", None) or ""
    return path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


__all__ = [
    "CompileError",
    "check_toolchain",
    "compile_module",
    "compile_modules",
    "cached_extension",
    "import_compiled",
    "compile_runtime",
    "generated_modules",
    "extension_suffix",
    "is_compiled",
    "INSTALL_HINT",
]
