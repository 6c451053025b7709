"""`phase` statements: what they parse to and every error they can have."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from protogen.diagnostics import SpecError
from protogen.models import PhaseArm
from protogen.parser import load_spec, parse_spec

FRAMES = """
frame A { framing delimited "\\n" }
frame B { framing fixed header { mark: u8 = 0x2A  n: u8 } }
frame C { framing fixed header { mark: u16 = 0x2B2B  n: u8 } }
"""


def spec_with(phases: str, prelude: str = "server decodes A\n"):
    return parse_spec(
        f"protocol p\n{prelude}{FRAMES}{textwrap.dedent(phases)}", "p.dsl"
    )


def errors(phases: str, prelude: str = "server decodes A\n") -> list[str]:
    with pytest.raises(SpecError) as caught:
        spec_with(phases, prelude)
    return [d.message for d in caught.value.diagnostics]


def test_phases_parse_start_first_prefixed_arms_longest_first() -> None:
    spec = spec_with("""
        phase Open { A then Main }
        start phase Main {
            "*" => B
            "++" => C then Open,
            default => A
        }
        """)
    assert [phase.name for phase in spec.phases] == ["Main", "Open"]
    main = spec.phases[0]
    assert main.arms == (
        PhaseArm("C", (b"++",), "Open"),
        PhaseArm("B", (b"*",), None),
        PhaseArm("A", (), None),
    )
    assert main.default == PhaseArm("A")
    assert spec.phases[1].arms == (PhaseArm("A", (), "Main"),)


def test_an_arm_may_list_several_first_bytes() -> None:
    spec = spec_with('phase P { "*", "+" => B  default => A }')
    assert spec.phases[0].arms[0] == PhaseArm("B", (b"*", b"+"))


def test_without_start_the_first_phase_is_where_connections_start() -> None:
    spec = spec_with("phase First { B }\nphase Second { A }")
    assert [phase.name for phase in spec.phases] == ["First", "Second"]


def test_a_spec_without_phases_has_none() -> None:
    assert spec_with("").phases == ()


@pytest.mark.parametrize(
    ("phases", "message"),
    [
        ("phase P { Nope }", "unknown frame 'Nope'"),
        ("phase P { A then Q }", "unknown phase 'Q'"),
        ("phase P { }", "phase 'P' accepts no frame"),
        ("phase P { A }\nphase P { B }", "duplicate phase 'P' (first at"),
        ("start phase P { A }\nstart phase Q { B }", "a second start phase"),
        ("phase P { A  B }", "phase 'P' has a default frame already"),
        ('phase P { "*" => B  "*" => C  default => A }', "overlap"),
        ('phase P { "+" => B  "++" => C }', "overlap"),
        ('phase P { "+", "+" => B }', "overlap"),
        ('phase P { "" => B }', "first bytes cannot be empty"),
        ('phase P { "*" => A  "+" => A }', "frame 'A' is accepted twice"),
        ("phase class { A }", "phase name 'class'"),
    ],
)
def test_phase_errors(phases: str, message: str) -> None:
    found = errors(phases)
    assert any(message in text for text in found), found


def test_phases_need_a_stream_transport() -> None:
    found = errors("phase P { A }", "server decodes A\ntransport tcp, udp\n")
    assert any("phases need a byte stream" in text for text in found), found


def test_the_test_spec_of_every_phase_kind_is_valid() -> None:
    spec = load_spec(
        Path(__file__).parents[1] / "codegen" / "specs" / "phased.proto.dsl"
    )
    assert [phase.name for phase in spec.phases] == ["Greeting", "Commands", "Binary"]
