"""Implementations of the CLI commands: build, check, serve, templates export.

Every user error (bad spec, missing file, bad URL, bad handler) ends as a short
message on stderr and an exit status: 1 for errors in the inputs, 2 for usage
errors. A traceback means a bug in protogen.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from .diagnostics import SpecError
from .models import ProtocolSpec

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A user error: printed as `protogen: error: <message>`, exits with `status`."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


def dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "build": cmd_build,
        "check": cmd_check,
        "serve": cmd_serve,
        "templates": cmd_templates,
        "version": cmd_version,
        "compile-runtime": cmd_compile_runtime,
        "compile": cmd_compile,
    }
    try:
        return commands[args.command](args)
    except CommandError as error:
        print(f"protogen: error: {error}", file=sys.stderr)
        return error.status
    except ModuleNotFoundError as error:
        if error.name not in GENERATOR_DEPENDENCIES:
            raise
        print(
            f"protogen: error: `protogen {args.command}` needs the generator, whose "
            f"dependencies ({', '.join(GENERATOR_DEPENDENCIES)}) are not installed "
            f"(no module named {error.name!r}); install them with: "
            "pip install 'protogen-toolkit[generator]'",
            file=sys.stderr,
        )
        return EXIT_ERROR


# What only the generator imports: a runtime-only install (the deployed server
# of generated code) has none of them.
GENERATOR_DEPENDENCIES = ("lark", "jinja2", "black")


# --- shared steps ----------------------------------------------------------------


def _load(path: str) -> ProtocolSpec | None:
    """Parse one spec; print its diagnostics and return None when it is bad."""
    from .parser import load_spec

    try:
        return load_spec(path)
    except SpecError as error:
        print(error.render(), file=sys.stderr)
        return None


def _with_bases(
    spec: ProtocolSpec, handler_base: str | None, frame_base: str | None
) -> ProtocolSpec:
    changes: dict[str, Any] = {}
    for option, value in (("handler_base", handler_base), ("frame_base", frame_base)):
        if value is None:
            continue
        module, sep, name = value.partition(":")
        if not sep or not module or not name:
            raise CommandError(
                f"--{option.replace('_', '-')} {value!r}: expected MODULE:CLASS",
                EXIT_USAGE,
            )
        changes[option] = value
    return dataclasses.replace(spec, **changes) if changes else spec


def _check_templates_dir(templates: str | None) -> None:
    if templates is not None and not os.path.isdir(templates):
        raise CommandError(f"--templates {templates}: no such directory", EXIT_USAGE)


@contextlib.contextmanager
def _generator_errors(spec: ProtocolSpec) -> Iterator[None]:
    """Template and formatting failures (a bad --templates override) as CommandErrors."""
    import jinja2

    from .format import GeneratedCodeError

    try:
        yield
    except jinja2.TemplateError as error:
        where = (
            f"{error.filename}:{error.lineno}: "
            if getattr(error, "filename", None)
            else ""
        )
        raise CommandError(
            f"{spec.source_file}: template error: {where}{error}"
        ) from None
    except GeneratedCodeError as error:
        raise CommandError(f"{spec.source_file}: {error}") from None


def _generate(
    spec: ProtocolSpec, args: argparse.Namespace, package: str | None, with_tests: bool
) -> dict[str, str]:
    from .generator import generate

    with _generator_errors(spec):
        return generate(
            spec, templates_dir=args.templates, package=package, with_tests=with_tests
        )


# --- protogen build ------------------------------------------------------------------


def cmd_build(args: argparse.Namespace) -> int:
    _check_templates_dir(args.templates)
    package = args.package
    if package is not None and not all(
        part.isidentifier() for part in package.split(".")
    ):
        raise CommandError(
            f"--package {package!r}: not a Python package name", EXIT_USAGE
        )
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise CommandError(f"-o {out_dir}: not a directory")
    specs = [_load(path) for path in args.specs]
    if any(spec is None for spec in specs):
        return EXIT_ERROR
    target = out_dir.joinpath(*package.split(".")) if package else out_dir
    names: dict[str, str] = {}
    written: list[Path] = []
    for spec in specs:
        assert spec is not None
        spec = _with_bases(spec, args.handler_base, args.frame_base)
        if spec.name in names:
            raise CommandError(
                f"{spec.source_file}: protocol {spec.name!r} is also defined by {names[spec.name]}"
            )
        names[spec.name] = spec.source_file
        outputs = _generate(spec, args, package, args.with_tests)
        written += _write(outputs, target)
    if package:
        written += _write_package_inits(out_dir, package, [n for n in names])
    if getattr(args, "compile", False):
        from .compile import generated_modules

        for protocol in names:
            written += _compile(generated_modules(target, protocol, package))
    for path in written:
        print(path)
    return EXIT_OK


def _write(outputs: dict[str, str], directory: Path) -> list[Path]:
    from .generator import write_outputs

    try:
        return [Path(path) for path in write_outputs(outputs, directory)]
    except OSError as error:
        raise CommandError(
            f"cannot write {error.filename or directory}: {error.strerror}"
        ) from None


def _compile(
    modules: list[tuple[Path, str]], out_dir: Path | None = None
) -> list[Path]:
    """Compiled mode: the modules as C extensions, or a CommandError saying why not."""
    from .compile import CompileError, compile_modules

    try:
        return compile_modules(modules, out_dir)
    except CompileError as error:
        raise CommandError(str(error)) from None
    except OSError as error:
        raise CommandError(f"cannot compile: {error}") from None


def _write_package_inits(
    out_dir: Path, package: str, protocols: list[str]
) -> list[Path]:
    """`__init__.py` for the package (and its parents), unless one exists already."""
    written = []
    parts = package.split(".")
    for depth in range(1, len(parts) + 1):
        init = out_dir.joinpath(*parts[:depth], "__init__.py")
        if init.exists():
            continue
        text = (
            f'"""Generated by protogen from {", ".join(protocols)}."""\n'
            if depth == len(parts)
            else ""
        )
        written += _write({"__init__.py": text}, init.parent)
    return written


# --- protogen check ------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for path in args.specs:
        if _load(path) is None:
            status = EXIT_ERROR
        else:
            print(f"{path}: ok")
    return status


# --- protogen serve ------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from protogen.runtime.cli import (
        configure_logging,
        log_format,
        log_level,
        runtime_options,
        serve_command,
    )

    from .cache import ensure_built, import_built

    templates = getattr(args, "templates", None)
    _check_templates_dir(templates)
    try:
        options = runtime_options(args)
        level = log_level(args)
        fmt = log_format(args)
    except ValueError as error:
        raise CommandError(str(error), EXIT_USAGE) from None
    listen = _parse_listen(args.listen or [])
    spec = _load(args.spec)
    if spec is None:
        return EXIT_ERROR
    spec = _with_bases(spec, getattr(args, "handler_base", None), None)
    if os.getcwd() not in sys.path:
        # Handler modules and handler bases live beside the user.
        sys.path.insert(0, os.getcwd())
    try:
        with _generator_errors(spec):
            root, package = ensure_built(spec, templates)
    except OSError as error:
        raise CommandError(f"cannot build into the cache: {error}") from None
    if getattr(args, "compile", False):
        from .compile import generated_modules

        _compile(generated_modules(root / package, spec.name, package))
    try:
        modules = import_built(spec, root, package)
    except Exception as error:  # e.g. a handler_base module that cannot be imported
        raise CommandError(
            f"cannot import the build of {spec.source_file}: {type(error).__name__}: {error}"
        ) from None
    server = modules["server"]
    if getattr(args, "compile", False) and args.handler:
        _import_compiled_handler(args.handler)
    handler_class = _handler_class(args.handler, server)
    addrs = listen or list(server.DEFAULT_LISTEN)
    configure_logging(level, fmt)
    try:
        handler = handler_class()
    except Exception as error:  # the user's constructor: report, don't trace
        raise CommandError(
            f"--handler: cannot create {handler_class.__name__}(): {error}"
        ) from None
    return serve_command("protogen", handler, addrs, options, protocol=spec.name)


def _import_compiled_handler(target: str) -> None:
    """serve --compile: the --handler module imported from a C extension
    compiled from its source (cached), else, when Cython refuses it, as pure
    Python after a warning saying why."""
    from .compile import CompileError, import_compiled

    module_name = target.partition(":")[0]
    if not module_name:
        return  # _handler_class reports the malformed target
    try:
        import_compiled(module_name)
    except CompileError as error:
        print(
            f"protogen: warning: --compile: serving handler module {module_name} "
            f"as pure Python: {error}",
            file=sys.stderr,
        )
    except Exception:
        # Its import failed for a reason of its own (a missing name, an error
        # in its body): _handler_class imports it again and reports that.
        sys.modules.pop(module_name, None)


def _parse_listen(urls: list[str]) -> list[str]:
    from protogen.runtime.address import AddressError, parse_address

    for url in urls:
        try:
            parse_address(url)
        except AddressError as error:
            raise CommandError(f"--listen: {error}", EXIT_USAGE) from None
    return urls


def _handler_class(target: str | None, server: Any) -> type:
    """The --handler class, or the generated echo handler without one."""
    if target is None:
        if server.DEFAULT_HANDLER is None:  # requests and replies differ
            raise CommandError(server.missing_handler_message(), EXIT_USAGE)
        return server.DEFAULT_HANDLER
    try:
        return server.load_handler(target)
    except ValueError as error:
        raise CommandError(str(error), EXIT_USAGE) from None
    except Exception as error:  # the user's module raised while importing
        raise CommandError(
            f"--handler {target!r}: importing failed: {type(error).__name__}: {error}"
        ) from None


# --- protogen version, compile-runtime -------------------------------------------------


def cmd_version(args: argparse.Namespace) -> int:
    from ._version import __version__

    print(f"protogen {__version__}")
    if not args.verbose:
        return EXIT_OK
    import platform

    from protogen.runtime import compiled

    from .compile import CompileError, check_toolchain

    print(f"python {platform.python_version()} ({sys.executable})")
    try:
        import Cython

        cython = f"Cython {Cython.__version__}"
    except ModuleNotFoundError:
        cython = "not installed"
    print(f"cython: {cython}")
    try:
        check_toolchain()
        available = "available"
    except CompileError as error:
        available = f"unavailable: {error}"
    print(f"compiled mode: {available}")
    if not compiled.enabled():
        print(f"runtime: pure Python ({compiled.ENABLE_ENV}=0)")
    modules = compiled.status()
    done = [name for name, is_compiled in modules.items() if is_compiled]
    print(
        f"runtime hot modules compiled: {len(done)} of {len(modules)} "
        f"(from {compiled.compiled_dir()})"
    )
    for name, is_compiled in modules.items():
        print(
            f"  protogen.runtime.{name}: {'compiled' if is_compiled else 'pure Python'}"
        )
    return EXIT_OK


def cmd_compile_runtime(args: argparse.Namespace) -> int:
    from .compile import CompileError, compile_runtime

    output = Path(args.output) if args.output else None
    if output is None and os.environ.get("PROTOGEN_COMPILED_DIR"):
        output = Path(os.environ["PROTOGEN_COMPILED_DIR"])
    try:
        if output is not None:
            output.mkdir(parents=True, exist_ok=True)
        built = compile_runtime(output)
    except CompileError as error:
        raise CommandError(str(error)) from None
    except OSError as error:
        raise CommandError(f"cannot compile the runtime: {error}") from None
    for path in built:
        print(path)
    return EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    package = args.package
    if package is not None and not all(
        part.isidentifier() for part in package.split(".")
    ):
        raise CommandError(
            f"--package {package!r}: not a Python package name", EXIT_USAGE
        )
    modules = []
    for name in args.modules:
        source = Path(name)
        if source.suffix != ".py" or not source.stem.isidentifier():
            raise CommandError(f"{name}: not a Python module (NAME.py)", EXIT_USAGE)
        if not source.is_file():
            raise CommandError(f"{name}: no such file")
        modules.append((source, f"{package}.{source.stem}" if package else source.stem))
    output = Path(args.output) if args.output else None
    if output is not None and output.exists() and not output.is_dir():
        raise CommandError(f"-o {output}: not a directory")
    from .compile import CompileError, compile_module

    built = []
    for source, module_name in modules:
        try:
            built.append(compile_module(source, module_name, output))
        except CompileError as error:
            raise CommandError(str(error)) from None
        except OSError as error:
            raise CommandError(f"cannot compile {source}: {error}") from None
    for path in built:
        print(path)
    return EXIT_OK


# --- protogen templates export ---------------------------------------------------------


def cmd_templates(args: argparse.Namespace) -> int:
    from .render import default_template_names, export_templates

    directory = Path(args.directory)
    if directory.exists() and not directory.is_dir():
        raise CommandError(f"{directory}: not a directory")
    existing = [
        name for name in default_template_names() if (directory / name).exists()
    ]
    if existing and not args.force:
        raise CommandError(
            f"{directory} already holds {', '.join(existing)}; use --force to overwrite"
        )
    try:
        written = export_templates(directory)
    except OSError as error:
        raise CommandError(
            f"cannot write {error.filename or directory}: {error.strerror}"
        ) from None
    for path in written:
        print(path)
    return EXIT_OK
