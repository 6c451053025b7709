"""The augmenting .pxd compiled mode derives from a module (no compiler needed)."""

from __future__ import annotations

from protogen.compile import imports_pxd, module_pxd, pxd_classes, slot_classes_pxd

OUTBOUND = """
class Outbound:
    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks = None
        self.size = 0
"""

CONN = """
from .outbound import Outbound
from .elsewhere import Other


class Local:
    __slots__ = ("n",)


class Conn:
    __slots__ = ("outbound", "local", "other", "moved", "later")

    def __init__(self) -> None:
        self.outbound = Outbound()
        self.local = Local()
        self.other = Other()
        self.moved = Outbound()
        self.later = None

    def swap(self, conn: Conn) -> None:
        conn.moved = None
"""


def test_a_field_built_in_init_from_a_cimportable_class_is_typed() -> None:
    outbound = slot_classes_pxd(OUTBOUND, "pkg.outbound")
    assert pxd_classes(outbound) == ["Outbound"]
    pxd = module_pxd(CONN, "pkg.conn", {"pkg.outbound": outbound})
    assert pxd.splitlines()[0] == "from pkg.outbound cimport Outbound"
    assert "    cdef public Outbound outbound" in pxd
    assert "    cdef public Local local" in pxd  # this module's own extension type


def test_fields_that_may_hold_something_else_stay_objects() -> None:
    pxd = module_pxd(CONN, "pkg.conn", {})
    # Other is not an extension type anyone declared; moved is assigned twice.
    assert "    cdef public object other" in pxd
    assert "    cdef public object moved" in pxd
    assert "    cdef public object later" in pxd
    # Without the module's .pxd, Outbound is not known to be an extension type.
    assert "    cdef public object outbound" in pxd
    assert "cimport" not in pxd


def test_a_module_without_cimportable_types_gets_the_plain_pxd() -> None:
    assert slot_classes_pxd(OUTBOUND) == (
        "cdef class Outbound:\n"
        "    cdef public object chunks\n"
        "    cdef public object size\n"
    )


CODEC = """
class Message:
    __slots__ = ("payload",)


def encode_message(frame, out=None):
    return frame.payload


def encode_many(*frames):
    return b"".join(frame.payload for frame in frames)


def helper(frame):
    return frame
"""

HANDLER = """
from .echo_codec import Message, encode_message, encode_many
from .echo_codec import helper as renamed
"""


def test_the_encoders_a_handler_imports_are_cpdef_and_cimported() -> None:
    codec = module_pxd(
        CODEC, "pkg.echo_codec", cpdef=["Message", "encode_message", "encode_many"]
    )
    assert "cpdef encode_message(frame, out=*)" in codec.splitlines()
    # *frames cannot be a cpdef signature; helper is not asked for.
    assert "encode_many" not in codec
    assert "helper" not in codec
    handler = imports_pxd(HANDLER, "pkg.echo_handler", {"pkg.echo_codec": codec})
    # (An imported alias keeps its Python import: a cimport would rename it.)
    assert handler == "from pkg.echo_codec cimport Message, encode_message\n"


def test_a_handler_cimports_nothing_from_a_codec_built_without_its_pxd() -> None:
    # Cython refused the codec's .pxd: built_pxd records "", so the handler
    # must not cimport what that build does not export.
    assert imports_pxd(HANDLER, "pkg.echo_handler", {"pkg.echo_codec": ""}) == ""
