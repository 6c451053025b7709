"""protogen: generate fast, specialized network servers from a framing DSL."""

from ._version import __version__

__all__ = ["__version__"]
