"""Validation of bit fields: `control: u8 bits { type: PacketType 4  flags: 4 }`.

Mixed into FrameBuilder. A carrier is an unsigned integer header (or trailer)
field; its bits are declared most significant first and their widths must add
up to exactly the carrier's width (`_: N` pads). Bit names share the frame's
field namespace.
"""

from __future__ import annotations

import dataclasses

from . import spec_ast as ast
from .models import BitField, ByteOrder, EnumDef, HeaderField, ScalarType
from .validate import (
    BUILTIN_TYPE_NAMES,
    Checker,
    TypeResolver,
    describe_type,
    suggestion,
)
from .validate_fields import check_escape

PADDING = "_"


class BitRules(Checker):
    """The bit-field half of FrameBuilder; needs the attributes declared below."""

    types: TypeResolver
    declared: dict[str, tuple[str, ast.FieldDecl]]
    # bit name -> (carrier name, declaration); padding `_` is never declared
    declared_bits: dict[str, tuple[str, ast.BitDecl]]
    poisoned: set[str]

    def _declare_bits(self, carrier: ast.FieldDecl, reserved: frozenset[str]) -> None:
        assert carrier.bits is not None
        for member in carrier.bits.members:
            name = member.name.text
            if name == PADDING:
                continue
            first = self._first_declaration(name)
            if first is not None:
                self.error(
                    member.name.span,
                    f"duplicate field '{name}' (first at {self.where(first)})",
                )
                continue
            self.declared_bits[name] = (carrier.name.text, member)
            if not self.check_identifier(member.name, "field name"):
                self.poisoned.add(name)
            elif name in reserved:
                self.error(
                    member.name.span,
                    f"field name '{name}' is reserved: generated frame classes "
                    "have a method of that name",
                )
                self.poisoned.add(name)

    def _first_declaration(self, name: str) -> ast.Span | None:
        if name in self.declared:
            return self.declared[name][1].span
        if name in self.declared_bits:
            return self.declared_bits[name][1].span
        return None

    def _poison_bits(self, decl: ast.FieldDecl) -> None:
        assert decl.bits is not None
        self.poisoned.update(member.name.text for member in decl.bits.members)

    def _carrier(
        self,
        field: HeaderField,
        decl: ast.FieldDecl,
        order: ByteOrder = ByteOrder.BIG,
    ) -> HeaderField:
        """`field` with its bit fields, or without them (reported) when they are wrong."""
        block = decl.bits
        assert block is not None
        shown = describe_type(field.type, field.enum)
        if decl.value is not None:
            self.error(
                decl.value.span,
                f"bit-field carrier '{field.name}' cannot have a value; "
                "give values to its bits",
            )
        if (
            field.enum is not None
            or not isinstance(field.type, ScalarType)
            or field.type.kind != "uint"
        ):
            self.error(
                decl.type.span,
                f"bits need an unsigned integer carrier (u8...u64); "
                f"'{field.name}' is {shown}",
            )
            self._poison_bits(decl)
            return field
        if not block.members:
            self.error(block.span, f"bit-field carrier '{field.name}' has no bits")
            return field
        total = 8 * field.size
        widths_ok = True
        for member in block.members:
            if member.width.value <= 0:
                self.error(
                    member.width.span,
                    f"bit field '{member.name.text}' has width {member.width.value}; "
                    "a bit field is 1 bit wide or more",
                )
                widths_ok = False
        if not widths_ok:
            self._poison_bits(decl)
            return field
        used = sum(member.width.value for member in block.members)
        if used != total:
            self.error(
                block.span,
                f"bit widths of '{field.name}' add up to {used}, but {shown} has "
                f"{total} bits (pad with `_: N`)",
            )
            self._poison_bits(decl)
            return field
        bits: list[BitField] = []
        position = total
        for member in block.members:
            position -= member.width.value
            bit = self._bit_field(field.name, member, position, order)
            if bit is not None:
                bits.append(bit)
        return dataclasses.replace(field, bits=tuple(bits))

    def _bit_field(
        self, carrier: str, member: ast.BitDecl, shift: int, order: ByteOrder
    ) -> BitField | None:
        name, width = member.name.text, member.width.value
        if name == PADDING:
            if member.enum is not None or member.value is not None:
                self.error(member.span, "padding `_` has no type or value")
            return None
        if self.declared_bits.get(name) != (carrier, member) or name in self.poisoned:
            return None  # a repeated or reserved name, already reported
        bit = BitField(name, width, shift, member.name.span.location)
        if member.enum is not None:
            enum_def = self._bit_enum(member, width)
            if enum_def is None:
                self.poisoned.add(name)
                return None
            bit = dataclasses.replace(bit, enum=enum_def.name)
        value = member.value  # the grammar allows `= INT|STRING` or `in {...}`
        if isinstance(value, ast.ConstValue):
            literal = value.value
            if not isinstance(literal, ast.IntLit):
                self.error(
                    literal.span,
                    f"bit field '{name}' is an integer; its constant must be one",
                )
            elif self._bit_value_ok(bit, literal):
                bit = dataclasses.replace(bit, const=literal.value)
        elif isinstance(value, ast.AllowedValues):
            allowed: list[int] = []
            for literal in value.values:
                if literal.value in allowed:
                    self.error(literal.span, f"value {literal.value} listed twice")
                elif self._bit_value_ok(bit, literal):
                    allowed.append(literal.value)
            if allowed:
                bit = dataclasses.replace(bit, allowed=tuple(allowed))
        if member.escape is not None:
            if bit.enum is not None or bit.const is not None or bit.allowed:
                self.error(
                    member.escape.span,
                    f"escape-coded bit field '{name}' is a plain integer: no enum, "
                    "constant or allowed set",
                )
                return None
            arms = check_escape(self, member.escape, bit.mask, order)
            if arms is None:
                self.poisoned.add(name)
                return None
            bit = dataclasses.replace(bit, escape=arms)
        return bit

    def _bit_enum(self, member: ast.BitDecl, width: int) -> EnumDef | None:
        assert member.enum is not None
        type_name = member.enum.text
        name = member.name.text
        if type_name in BUILTIN_TYPE_NAMES:
            self.error(
                member.enum.span,
                f"bit field '{name}' is an unsigned integer of {width} bits: "
                f"write '{name}: {width}', or name an enum",
            )
            return None
        enum_def = self.types.enums.get(type_name)
        if enum_def is None:
            if type_name not in self.types.poisoned_enums:
                self.error(
                    member.enum.span,
                    f"unknown enum '{type_name}'"
                    + suggestion(type_name, self.types.enums),
                )
            return None
        limit = (1 << width) - 1
        for enum_member in enum_def.members:
            if not 0 <= enum_member.value <= limit:
                self.error(
                    member.enum.span,
                    f"enum '{type_name}' does not fit in {width} bits: "
                    f"{enum_member.name} = {enum_member.value} (bit field '{name}' "
                    f"holds 0..{limit})",
                )
                return None
        return enum_def

    def _bit_value_ok(self, bit: BitField, literal: ast.IntLit) -> bool:
        if not 0 <= literal.value <= bit.mask:
            self.error(
                literal.span,
                f"value {literal.value} out of range for bit field '{bit.name}' "
                f"of {bit.bits} bits (0..{bit.mask})",
            )
            return False
        if bit.enum is not None:
            values = {m.value for m in self.types.enums[bit.enum].members}
            if literal.value not in values:
                self.error(
                    literal.span,
                    f"value {literal.value} of bit field '{bit.name}' is not a "
                    f"value of enum '{bit.enum}'",
                )
                return False
        return True

    def _bit_field_misuse(self, ref: ast.Ident, message: str) -> bool:
        """Report `ref` naming a bit field where a whole header field is needed."""
        if ref.text not in self.declared_bits:
            return False
        if ref.text not in self.poisoned:
            self.error(ref.span, message)
        return True

    def _find_bit(self, name: str, fields: list[HeaderField]) -> BitField | None:
        for field in fields:
            for bit in field.bits:
                if bit.name == name:
                    return bit
        return None
