"""Template views of a spec's connection phases (handler.py.j2's phased loop,
properties.py.j2's transition tests); see docs/templates.md."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import models as ir
from .render import py_literal, snake_case, upper_snake

# Handler methods a frame's callback or dispatch method must not shadow.
RESERVED_METHODS = frozenset(
    {
        "on_boot",
        "on_open",
        "on_close",
        "on_traffic",
        "on_tick",
        "on_shutdown",
        "on_write_pause",
        "on_protocol_error",
        "send",
        "send_threadsafe",
        "switch",
        "phase",
    }
)


@dataclass
class PhasedFrame:
    """A frame some phase accepts: its callback and the decoder the handler keeps."""

    name: str
    callback: str  # on_<frame>
    decoder: str  # the codec's decoder class
    attribute: str  # the handler attribute holding the decoder (or per-connection dict)
    per_conn: (
        bool  # delimiter scans resume where they stopped: one decoder per connection
    )
    dispatch_field: str | None = None
    dispatch_enum: str | None = None
    unknown_method: str = ""
    # The decoder has decode_run (`framing array` with a terminator): the loop
    # takes frames in a row from one call.
    runs: bool = False
    # (enum member, method name) for `dispatch on`
    methods: list[tuple[str, str]] = field(default_factory=list)
    # Its decoder's decode_all cuts many frames at once (composite framing with a
    # length header): a phase whose only frame it is decodes through it.
    batched: bool = False


@dataclass
class PhasedArm:
    frame: PhasedFrame
    prefixes: tuple[bytes, ...]  # none: the phase's default frame
    then: str | None  # Phase member the frame moves the connection to
    const: str = ""  # module constant the choice tests, when it needs one
    const_value: str = ""  # its Python literal
    test: str = ""  # the condition choosing this arm
    shown: str = ""  # the first bytes, for the docstring

    @property
    def tuple_literal(self) -> str:
        return py_literal(self.prefixes)


@dataclass
class PhaseView:
    name: str
    method: str  # the handler's decode loop for this phase
    arms: list[PhasedArm]
    default: PhasedArm | None
    prefixed: list[PhasedArm]
    # Every prefix is one byte: the choice compares the byte as an integer.
    single_bytes: bool
    longest: int = 0  # the longest prefix (multi-byte choices read this many bytes)
    all_const: str = ""  # the constant with every prefix (to tell "too few bytes yet")
    all_value: str = ""


def phase_views(spec: ir.ProtocolSpec) -> dict[str, object] | None:
    """What the phased handler template needs; None for a one-phase spec."""
    if not spec.phases:
        return None
    frames: dict[str, PhasedFrame] = {}
    for phase in spec.phases:
        for arm in phase.arms:
            if arm.frame not in frames:
                frames[arm.frame] = _phased_frame(spec.frame(arm.frame))
    taken = set(RESERVED_METHODS) | {f.callback for f in frames.values()}
    for view in frames.values():
        _name_dispatch_methods(spec, view, taken)
    phases = [_phase_view(phase, frames) for phase in spec.phases]
    return {
        "phases": phases,
        "start": phases[0],
        "frames": list(frames.values()),
        "per_conn": [f for f in frames.values() if f.per_conn],
        "max_frame": max(spec.frame(name).max_frame for name in frames),
    }


def _phase_view(phase: ir.Phase, frames: dict[str, PhasedFrame]) -> PhaseView:
    arms = [PhasedArm(frames[arm.frame], arm.prefixes, arm.then) for arm in phase.arms]
    prefixed = [arm for arm in arms if arm.prefixes]
    every = [prefix for arm in prefixed for prefix in arm.prefixes]
    single = all(len(prefix) == 1 for prefix in every)
    view = PhaseView(
        phase.name,
        f"_decode_{snake_case(phase.name)}",
        arms,
        next((arm for arm in arms if not arm.prefixes), None),
        prefixed,
        single,
        max(map(len, every), default=0),
    )
    upper = upper_snake(phase.name)
    for arm in prefixed:
        arm.shown = " or ".join(py_literal(prefix) for prefix in arm.prefixes)
        arm.const = f"_{upper}_{upper_snake(arm.frame.name)}_FIRST_BYTES"
        if single and len(arm.prefixes) == 1:
            arm.const = ""
            arm.test = f"first == {arm.prefixes[0][0]}"
        elif single:
            arm.const_value = f"frozenset({py_literal(b''.join(arm.prefixes))})"
            arm.test = f"first in {arm.const}"
        else:
            arm.const_value = (
                py_literal(arm.prefixes[0])
                if len(arm.prefixes) == 1
                else py_literal(arm.prefixes)
            )
            arm.test = f"head.startswith({arm.const})"
    if every and not single:
        view.all_const = f"_{upper}_FIRST_BYTES"
        view.all_value = py_literal(tuple(every))
    return view


def _phased_frame(frame: ir.FrameDef) -> PhasedFrame:
    snake = snake_case(frame.name)
    per_conn = frame.framing.kind in ("delimited", "array", "composite")
    framing = frame.framing
    return PhasedFrame(
        frame.name,
        f"on_{snake}",
        f"{frame.name}Decoder",
        f"_{snake}_decoders" if per_conn else f"_{snake}_decoder",
        per_conn,
        runs=isinstance(framing, ir.ArrayFraming) and bool(framing.item_terminator),
        batched=frame.framing.kind == "composite"
        and frame.framing.length_header is not None,
    )


def _name_dispatch_methods(
    spec: ir.ProtocolSpec, view: PhasedFrame, taken: set[str]
) -> None:
    """on_<member>, else on_<field>_<member>, else on_<frame>_<member>."""
    frame = spec.frame(view.name)
    dispatch = frame.dispatch_field()
    if dispatch is None or dispatch.enum is None:
        return
    enum = spec.enum(dispatch.enum)
    view.dispatch_field = dispatch.name
    view.dispatch_enum = enum.name
    candidates = [
        f"on_unknown_{dispatch.name}",
        f"on_unknown_{snake_case(frame.name)}_{dispatch.name}",
    ]
    view.unknown_method = next(name for name in candidates if name not in taken)
    taken.add(view.unknown_method)
    for member in enum.members:
        for method in (
            f"on_{member.name}",
            f"on_{dispatch.name}_{member.name}",
            f"on_{snake_case(frame.name)}_{member.name}",
        ):
            if method not in taken:
                break
        taken.add(method)
        view.methods.append((member.name, method))
