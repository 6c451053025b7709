"""View models of the hypothesis strategies `--with-tests` generates.

A frame or structure strategy is a `@st.composite` function drawing the fields
in wire order, so that conditions, sizes and constraints can use the fields
drawn before them, as the decoder does: a conditional field is drawn only when
its condition holds, a field's `where` becomes `assume(...)`, a count or size
the encoder computes is drawn as the length of what it measures, a presence
flag as 0 or 1, a union arm from its discriminant. Values stay small (a few
elements, a few dozen bytes) so that examples stay fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from . import expressions as ex
from . import models as ir
from .context_fields import Locals, extern_const
from .render import py_literal, snake_case

MAX_ELEMENTS = 3
MAX_BYTES = 24
MAX_TEXT = 12
SMALL_COUNT = 3  # counts drawn for nothing in particular


@dataclass
class DrawStep:
    """`var = draw(strategy)` (or `var = value`), under `condition`, then assumes.

    kind "draw": `strategy` is an expression; "value": `value` is an expression;
    "union": one arm per discriminant value (`arms`: (test, DrawStep));
    "assume": only `assumes` (a carrier's constraint, after its bits).
    """

    kind: str
    var: str
    strategy: str = ""
    value: str = ""
    condition: str | None = None
    assumes: list[str] = field(default_factory=list)
    arms: list[tuple[str, Any]] = field(default_factory=list)
    default: Any = None
    annotation: str = ""  # unions: the variable's type, declared before the arms


@dataclass
class StrategyView:
    name: str  # the composite function
    cls: str  # the class it builds
    params: list[tuple[str, str]]  # (variable, annotation)
    steps: list[DrawStep]
    kwargs: list[tuple[str, str]]  # (attribute, variable) passed to the class
    assumes: list[str] = field(default_factory=list)  # after every field


class StrategyBuilder:
    def __init__(
        self,
        spec: ir.ProtocolSpec,
        enums: dict[str, Any],
        annotation: Callable[[ir.ValueType], str],
    ) -> None:
        self.spec = spec
        self.enums = enums
        self.annotation = annotation
        self.uses_externs = False
        self.unknown: set[str] = set()  # names whose values the encoder computes later

    # Structures and frame bodies --------------------------------------------------

    def struct(self, struct_def: ir.StructDef) -> StrategyView:
        self.unknown = _region_sized(struct_def.fields)
        locals_ = Locals(("draw",))
        names: dict[str, str] = {}
        params = []
        for param in struct_def.params:
            names[param.name] = locals_.claim(param.name)
            params.append((names[param.name], param.enum or "int"))
        steps, kwargs = self.sequence(struct_def.fields, names, locals_)
        snake = snake_case(struct_def.name)
        view = StrategyView(f"{snake}_values", struct_def.name, params, steps, kwargs)
        return _pruned(view)

    def frame(self, frame: ir.FrameDef) -> StrategyView:
        self.unknown = _region_sized(frame.body)
        if isinstance(frame.framing, ir.LengthFraming):
            self.unknown.add(frame.framing.field)
        locals_ = Locals(("draw",))
        names: dict[str, str] = {}
        steps: list[DrawStep] = []
        kwargs: list[tuple[str, str]] = []
        for hf in frame.header + frame.trailer:
            names[hf.name] = locals_.claim(hf.name)
            for bit in hf.bits:
                names[bit.name] = locals_.claim(bit.name)
        for hf in frame.header:
            steps += self._fixed(hf, names, kwargs)
        body_steps, body_kwargs = self.sequence(
            frame.body, names, locals_, header=frame
        )
        steps += body_steps
        kwargs += body_kwargs
        for hf in frame.trailer:
            steps += self._fixed(hf, names, kwargs)
        view = StrategyView(
            f"{snake_case(frame.name)}_candidates", frame.name, [], steps, kwargs
        )

        def var(ref: ir.Ref) -> str:
            return names[ref.name] + "".join(f".{p}" for p in ref.path[1:])

        for where in frame.where:
            if self._known(where, names, frame):
                _place(view, ex.python(where, var), {names[n] for n in ex.names(where)})
        return _pruned(view)

    def _known(self, expr: ir.Expr, names: dict[str, str], frame: ir.FrameDef) -> bool:
        """Frame constraints over values the strategy draws (not the length)."""
        computed = (
            {frame.framing.field}
            if isinstance(frame.framing, ir.LengthFraming)
            else set()
        )
        return not (ex.names(expr) & computed)

    def _fixed(
        self, hf: ir.HeaderField, names: dict[str, str], kwargs: list[tuple[str, str]]
    ) -> list[DrawStep]:
        """A header or trailer field: drawn when the user supplies it."""
        steps = []
        var = names[hf.name]
        if hf.bits:
            for bit in hf.bits:
                bit_var = names[bit.name]
                if bit.const is not None:
                    steps.append(
                        DrawStep("value", bit_var, value=py_literal(bit.const))
                    )
                elif bit.derived is not None and bit.derived.kind == "presence":
                    steps.append(
                        DrawStep("draw", bit_var, strategy="st.integers(0, 1)")
                    )
                    kwargs.append((bit.name, bit_var))
                elif bit.derived is not None:
                    steps.append(DrawStep("value", bit_var, value="0"))
                elif bit.enum is not None:
                    steps.append(
                        DrawStep(
                            "draw",
                            bit_var,
                            strategy=f"st.sampled_from(list({bit.enum}))",
                        )
                    )
                    kwargs.append((bit.name, bit_var))
                elif bit.allowed:
                    steps.append(
                        DrawStep(
                            "draw",
                            bit_var,
                            strategy=f"st.sampled_from({list(bit.allowed)!r})",
                        )
                    )
                    kwargs.append((bit.name, bit_var))
                else:
                    steps.append(
                        DrawStep(
                            "draw", bit_var, strategy=f"st.integers(0, {bit.mask})"
                        )
                    )
                    kwargs.append((bit.name, bit_var))
            return steps
        if hf.const is not None:
            return [DrawStep("value", var, value=py_literal(hf.const))]
        if not hf.is_user_supplied:
            return [DrawStep("value", var, value="0")]
        if isinstance(hf.type, ir.BytesType):
            strategy = f"st.binary(min_size={hf.size}, max_size={hf.size})"
        else:
            strategy = self._scalar(hf.type, hf.enum, hf.allowed)
        step = DrawStep("draw", var, strategy=strategy)
        if hf.where is not None:
            step.assumes.append(ex.python(hf.where, lambda r: names[r.name]))
        kwargs.append((hf.name, var))
        return [step]

    def sequence(
        self,
        fields: tuple[ir.Field, ...],
        names: dict[str, str],
        locals_: Locals,
        header: ir.FrameDef | None = None,
    ) -> tuple[list[DrawStep], list[tuple[str, str]]]:
        for f in fields:
            names[f.name] = locals_.claim(f.name)
            for bit in f.bits:
                names[bit.name] = locals_.claim(bit.name)
        derived_by_target: dict[str, list[tuple[str, ir.Derived]]] = {}
        owners = [(f.name, f.derived) for f in fields if f.derived is not None]
        owners += [
            (b.name, b.derived) for f in fields for b in f.bits if b.derived is not None
        ]
        if header is not None:
            for hf in header.header:
                if hf.derived is not None:
                    owners.append((hf.name, hf.derived))
                owners += [
                    (b.name, b.derived) for b in hf.bits if b.derived is not None
                ]
        for owner, derived in owners:
            if derived.kind in ("size", "count"):
                derived_by_target.setdefault(derived.of[0], []).append((owner, derived))
        drawn_early: set[str] = set()
        steps: list[DrawStep] = []
        kwargs: list[tuple[str, str]] = []
        by_name = {f.name: f for f in fields}

        def var(ref: ir.Ref) -> str:
            if ref.name not in names:
                return ref.name
            return names[ref.name] + "".join(f".{p}" for p in ref.path[1:])

        # Header sizes and counts (DNS qdcount) are drawn as their array's length.
        if header is not None:
            for hf in header.header:
                if hf.derived is not None and hf.derived.kind in ("size", "count"):
                    target = by_name.get(hf.derived.of[0])
                    if target is not None:
                        steps += self._early(target, names, var, drawn_early)
                        steps.append(
                            self._measure(names[hf.name], hf.name, target, names)
                        )
        for f in fields:
            fvar = names[f.name]
            if f.bits:
                for bit in f.bits:
                    steps.append(self._bit_step(bit, names[bit.name], kwargs))
                if f.where is not None:
                    steps.append(
                        DrawStep("assume", "", assumes=[ex.python(f.where, var)])
                    )
                continue
            if f.derived is not None:
                if f.derived.kind == "presence":
                    steps.append(DrawStep("draw", fvar, strategy="st.integers(0, 1)"))
                    kwargs.append((f.name, fvar))
                elif f.derived.kind in ("size", "count"):
                    target = by_name.get(f.derived.of[0])
                    if target is not None:
                        steps += self._early(target, names, var, drawn_early)
                        steps.append(self._measure(fvar, f.name, target, names))
                        kwargs.append((f.name, fvar))
                else:
                    steps.append(DrawStep("value", fvar, value="None"))
                continue
            if f.name in drawn_early:
                kwargs.append((f.name, fvar))
                continue
            if f.const is not None:
                steps.append(DrawStep("value", fvar, value=py_literal(f.const)))
                continue
            steps.append(self._field(f, fvar, var))
            kwargs.append((f.name, fvar))
        return steps, kwargs

    def _early(
        self,
        target: ir.Field,
        names: dict[str, str],
        var: Callable[[ir.Ref], str],
        drawn: set[str],
    ) -> list[DrawStep]:
        if target.name in drawn:
            return []
        drawn.add(target.name)
        return [self._field(target, names[target.name], var)]

    def _measure(
        self, fvar: str, name: str, target: ir.Field, names: dict[str, str]
    ) -> DrawStep:
        """A size or count: solved from the length of what it measures."""
        ftype = target.type
        assert isinstance(ftype, (ir.BlobType, ir.ArrayType))
        count = ftype.extent.count
        assert count is not None
        tvar = names[target.name]
        measured = (
            f"len({tvar}.encode())"
            if isinstance(ftype, ir.BlobType) and ftype.text
            else f"len({tvar})"
        )
        value, _ = ex.solve(count, name, ir.Ref(("__SIZE__",)))
        expr = ex.python(
            value, lambda r: measured if r.name == "__SIZE__" else names[r.name]
        )
        if ftype.extent.nullable:
            expr = f"-1 if {tvar} is None else {expr}"
        return DrawStep("value", fvar, value=expr)

    def _bit_step(
        self, bit: ir.BitField, var: str, kwargs: list[tuple[str, str]]
    ) -> DrawStep:
        if bit.const is not None:
            return DrawStep("value", var, value=py_literal(bit.const))
        if bit.derived is not None and bit.derived.kind != "presence":
            return DrawStep("value", var, value="None")
        kwargs.append((bit.name, var))
        if bit.derived is not None:
            return DrawStep("draw", var, strategy="st.integers(0, 1)")
        if bit.enum is not None:
            return DrawStep("draw", var, strategy=f"st.sampled_from(list({bit.enum}))")
        if bit.allowed:
            return DrawStep(
                "draw", var, strategy=f"st.sampled_from({list(bit.allowed)!r})"
            )
        if bit.escape:
            return DrawStep(
                "draw", var, strategy=f"st.integers(0, {bit.escape[-1].type.max_value})"
            )
        return DrawStep("draw", var, strategy=f"st.integers(0, {bit.mask})")

    def _field(self, f: ir.Field, fvar: str, var: Callable[[ir.Ref], str]) -> DrawStep:
        if isinstance(f.type, ir.UnionType):
            step = self._union(f.type, fvar, var)
        else:
            step = DrawStep(
                "draw", fvar, strategy=self.value(f.type, var, enum=f.enum, f=f)
            )
        if f.condition is not None:
            step.condition = ex.python(f.condition, var)
        if f.where is not None:
            constraint = ex.python(f.where, var)
            if f.condition is not None:  # checked only when the field is present
                constraint = f"{fvar} is None or ({constraint})"
            step.assumes.append(constraint)
        return step

    def _union(
        self, union: ir.UnionType, fvar: str, var: Callable[[ir.Ref], str]
    ) -> DrawStep:
        discriminant = ex.python(union.discriminant, var)
        step = DrawStep("union", fvar, annotation=self.annotation(union))
        for arm in union.arms:
            test = (
                f"{discriminant} == {arm.values[0]}"
                if len(arm.values) == 1
                else f"{discriminant} in {set(arm.values)!r}"
            )
            step.arms.append((test, self._arm(arm.type, fvar, var)))
        if union.default is not None:
            step.default = self._arm(union.default, fvar, var)
        return step

    def _arm(
        self, ftype: ir.ValueType, fvar: str, var: Callable[[ir.Ref], str]
    ) -> DrawStep:
        if isinstance(ftype, ir.UnionType):
            return self._union(ftype, fvar, var)
        return DrawStep("draw", fvar, strategy=self.value(ftype, var))

    # Value strategies (expressions) ------------------------------------------------

    def value(
        self,
        ftype: ir.ValueType,
        var: Callable[[ir.Ref], str],
        *,
        enum: str | None = None,
        f: ir.Field | None = None,
    ) -> str:
        if isinstance(ftype, ir.EnumType):
            return f"st.sampled_from(list({ftype.name}))"
        if isinstance(ftype, ir.ScalarType):
            allowed = f.allowed if f is not None else None
            if f is not None and f.escape:
                return f"st.integers(0, {f.escape[-1].type.max_value})"
            return self._scalar(ftype, enum, allowed)
        if isinstance(ftype, ir.BytesType):
            return f"st.binary(min_size={ftype.size}, max_size={ftype.size})"
        if isinstance(ftype, ir.VarintType):
            if ftype.style == "zigzag":
                return "st.integers(-(2**63), 2**63 - 1)"
            top = 268_435_455 if ftype.style == "mqtt_varint" else 2**64 - 1
            return f"st.integers(0, {top})"
        if isinstance(ftype, ir.BlobType):
            return self._blob(ftype, var, f)
        if isinstance(ftype, ir.StructRef):
            args = ", ".join(ex.python(a, var) for a in ftype.args)
            return f"{snake_case(ftype.name)}_values({args})"
        if isinstance(ftype, ir.ExternRef):
            self.uses_externs = True
            return f"{extern_const(ftype.name)}.strategy()"
        if isinstance(ftype, ir.ArrayType):
            return self._array(ftype, var, f)
        raise AssertionError("unions are drawn by steps")  # pragma: no cover

    def _scalar(
        self, scalar: ir.FieldType, enum: str | None, allowed: tuple[int, ...] | None
    ) -> str:
        if enum is not None:
            return f"st.sampled_from(list({enum}))"
        if allowed:
            return f"st.sampled_from({list(allowed)!r})"
        assert isinstance(scalar, ir.ScalarType)
        if scalar.kind == "float":
            return f"st.floats(width={8 * scalar.size}, allow_nan=False)"
        return f"st.integers({scalar.min_value}, {scalar.max_value})"

    def _sized(
        self, extent: ir.Extent, var: Callable[[ir.Ref], str], f: ir.Field | None
    ) -> str | None:
        """An exact count, when the count is an expression of values drawn before."""
        if extent.kind != "count" or extent.count is None:
            return None
        if f is not None and self._measured(f):
            return None  # the count is drawn as this value's length
        if ex.names(extent.count) & self.unknown:
            return None
        return ex.python(extent.count, var)

    def _measured(self, f: ir.Field) -> bool:
        """True when a size or count field is computed from `f` (drawn freely)."""
        for owner in self._all_fields():
            derived = owner.derived
            if (
                derived is not None
                and f.name in derived.of
                and derived.kind in ("size", "count")
            ):
                return True
        return False

    def _all_fields(self) -> list[Any]:
        out: list[Any] = []
        for frame in self.spec.frames:
            out += list(frame.header) + list(frame.body)
            out += [b for hf in frame.header for b in hf.bits]
            out += [b for bf in frame.body for b in bf.bits]
        for struct_def in self.spec.structs:
            out += list(struct_def.fields)
            out += [b for sf in struct_def.fields for b in sf.bits]
        return out

    def _limit(self, extent: ir.Extent, default: int) -> int:
        if extent.kind == "prefix" and isinstance(extent.prefix, ir.ScalarType):
            top = extent.prefix.max_value
            return min(default, top)
        return default

    def _blob(
        self, blob: ir.BlobType, var: Callable[[ir.Ref], str], f: ir.Field | None
    ) -> str:
        extent = blob.extent
        exact = self._sized(extent, var, f)
        if blob.text:
            if exact is not None:
                strategy = _exact(
                    exact, "st.text(ALPHABET, min_size={n}, max_size={n})"
                )
            else:
                strategy = f"st.text(max_size={self._limit(extent, MAX_TEXT)})"
        elif exact is not None:
            strategy = _exact(exact, "st.binary(min_size={n}, max_size={n})")
        else:
            strategy = f"st.binary(max_size={self._limit(extent, MAX_BYTES)})"
        if extent.kind == "terminator":
            assert extent.terminator is not None
            terminator = py_literal(extent.terminator)
            raw = "value.encode()" if blob.text else "value"
            strategy += f".filter(lambda value: ({raw} + {terminator}).find({terminator}) == len({raw}))"
        if extent.nullable:
            strategy = f"st.none() | {strategy}"
        return strategy

    def _array(
        self, array: ir.ArrayType, var: Callable[[ir.Ref], str], f: ir.Field | None
    ) -> str:
        element = self.value(array.element, var)
        extent = array.extent
        if extent.kind == "until":
            assert extent.until is not None

            def item(ref: ir.Ref) -> str:
                if ref.name == "it":
                    return "item" + "".join(f".{p}" for p in ref.path[1:])
                return var(ref)

            until = ex.python(extent.until, item)
            return (
                f"st.tuples(st.lists({element}.filter(lambda item: not ({until})), "
                f"max_size={MAX_ELEMENTS}), {element}.filter(lambda item: bool({until})))"
                ".map(lambda parts: [*parts[0], parts[1]])"
            )
        exact = self._sized(extent, var, f)
        if exact is not None:
            strategy = _exact(
                exact, f"st.lists({element}, min_size={{n}}, max_size={{n}})"
            )
        else:
            strategy = f"st.lists({element}, max_size={MAX_ELEMENTS})"
        if extent.nullable:
            strategy = f"st.none() | {strategy}"
        return strategy


def _exact(count: str, template: str) -> str:
    """A strategy of exactly `count` items, or none when that is not a small size."""
    if count.isdigit():
        return template.format(n=count)
    return f"({template.format(n=count)} if 0 <= {count} <= 64 else st.nothing())"


def _place(view: StrategyView, condition: str, uses: set[str]) -> None:
    """Assume `condition` as soon as the variables it uses are drawn (a rejection
    then costs nothing more)."""
    last = -1
    for index, step in enumerate(view.steps):
        if step.var in uses:
            last = index
    if last < 0:
        view.assumes.append(condition)
    else:
        view.steps[last].assumes.append(condition)


def _pruned(view: StrategyView) -> StrategyView:
    """Drop values nothing reads (constants and computed fields no condition uses)."""
    used: set[str] = {var for _, var in view.kwargs}
    texts = list(view.assumes)
    for step in view.steps:
        texts += _texts(step)
    words = set(re.findall(r"\b\w+\b", " ".join(texts)))
    view.steps = [
        step
        for step in view.steps
        if step.kind != "value" or step.var in used or step.var in words
    ]
    return view


def _texts(step: DrawStep) -> list[str]:
    """The expressions of a step (and of its arms) that may name variables."""
    out = [step.strategy, step.value, step.condition or "", *step.assumes]
    for test, arm in step.arms:
        out += [test, *_texts(arm)]
    if step.default is not None:
        out += _texts(step.default)
    return out


def _region_sized(fields: tuple[ir.Field, ...]) -> set[str]:
    """Fields (and bits) holding region sizes: known only once encoded."""
    names = {
        f.name for f in fields if f.derived is not None and f.derived.kind == "region"
    }
    names |= {
        b.name
        for f in fields
        for b in f.bits
        if b.derived is not None and b.derived.kind == "region"
    }
    return names


__all__ = ["StrategyBuilder", "StrategyView", "DrawStep"]
