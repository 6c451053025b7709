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
    # (enum member, method name) for `dispatch on`
    methods: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class PhasedArm:
    frame: PhasedFrame
    prefix: bytes | None
    prefix_const: str  # module constant holding the prefix ("" for the default)
    prefix_literal: str
    then: str | None  # Phase member the frame moves the connection to


@dataclass
class PhaseView:
    name: str
    method: str  # the handler's decode loop for this phase
    arms: list[PhasedArm]
    default: PhasedArm | None
    prefixed: list[PhasedArm]
    # Every prefix is one byte: the choice is an integer comparison.
    single_bytes: bool


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
    phases = []
    for phase in spec.phases:
        arms = []
        for arm in phase.arms:
            const = (
                f"_{upper_snake(phase.name)}_{upper_snake(arm.frame)}_FIRST_BYTES"
                if arm.prefix is not None
                else ""
            )
            arms.append(
                PhasedArm(
                    frames[arm.frame],
                    arm.prefix,
                    const,
                    py_literal(arm.prefix) if arm.prefix is not None else "",
                    arm.then,
                )
            )
        prefixed = [arm for arm in arms if arm.prefix is not None]
        phases.append(
            PhaseView(
                phase.name,
                f"_decode_{snake_case(phase.name)}",
                arms,
                next((arm for arm in arms if arm.prefix is None), None),
                prefixed,
                all(len(arm.prefix or b"") == 1 for arm in prefixed),
            )
        )
    return {
        "phases": phases,
        "start": phases[0],
        "frames": list(frames.values()),
        "per_conn": [f for f in frames.values() if f.per_conn],
        "max_frame": max(spec.frame(name).max_frame for name in frames),
    }


def _phased_frame(frame: ir.FrameDef) -> PhasedFrame:
    snake = snake_case(frame.name)
    per_conn = frame.framing.kind in ("delimited", "composite")
    return PhasedFrame(
        frame.name,
        f"on_{snake}",
        f"{frame.name}Decoder",
        f"_{snake}_decoders" if per_conn else f"_{snake}_decoder",
        per_conn,
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
