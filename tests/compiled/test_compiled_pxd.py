"""The augmenting .pxd compiled mode derives from a module (no compiler needed)."""

from __future__ import annotations

from protogen.compile import module_pxd, pxd_classes, slot_classes_pxd

OUTBOUND = '''
class Outbound:
    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks = None
        self.size = 0
'''

CONN = '''
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
'''


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
