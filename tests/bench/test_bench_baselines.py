"""The typed and memcached rows are compared with their own baselines, and the
typed path's targets are checked (pure functions of bench/benchlib/report.py)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from benchlib.report import check_targets, summarize  # noqa: E402


def _runs(scenario: str, by_peer: dict[str, list[float]]) -> list[dict]:
    return [
        {
            "scenario": scenario,
            "family": "throughput",
            "peer": peer,
            "ok": True,
            "round": index,
            "rps": rps,
        }
        for peer, values in by_peer.items()
        for index, rps in enumerate(values)
    ]


def test_typed_peers_are_compared_with_the_typed_uvloop_peer() -> None:
    runs = _runs(
        "echo-d16-64B-c50",
        {
            "uvloop": [400, 400, 400],
            "uvloop-typed": [100, 100, 100],
            "protogen": [500, 500, 500],
            "protogen-typed": [130, 110, 125],
            "protogen-typed-compiled": [260, 240, 250],
        },
    )
    rows = {row["peer"]: row for row in summarize(runs)}
    assert rows["protogen"]["ratio"] == 500 / 400
    assert rows["protogen-typed"]["ratio"] == 125 / 100
    assert rows["protogen-typed-compiled"]["ratio"] == 2.5
    checks = {c["target"]: c for c in check_targets(list(rows.values()))}
    pure = checks[">= 1.2x uvloop-typed (typed, pure)"]
    compiled = checks[">= 2.5x uvloop-typed (typed, compiled)"]
    assert pure["passed"] and pure["detail"] == "1.25x"
    assert compiled["passed"] and compiled["detail"] == "2.50x"


def test_the_compiled_target_is_for_depth_16_and_misses_below_it() -> None:
    runs = _runs(
        "echo-d16-64B-c50",
        {"uvloop-typed": [100, 100, 100], "protogen-typed-compiled": [200, 240, 220]},
    )
    runs += _runs(
        "echo-d1-64B-c50",
        {"uvloop-typed": [100, 100, 100], "protogen-typed-compiled": [300, 300, 300]},
    )
    checks = check_targets(summarize(runs))
    compiled = [c for c in checks if "compiled" in c["target"]]
    assert [c["scenario"] for c in compiled] == ["echo-d16-64B-c50"]
    assert not compiled[0]["passed"] and compiled[0]["detail"] == "2.20x"


def test_memcached_rows_are_compared_with_memcached() -> None:
    runs = _runs(
        "memcached-binary-c64",
        {
            "memcached": [100, 100, 100],
            "protogen": [50, 50, 50],
            "protogen-compiled": [70, 60, 65],
        },
    )
    rows = {row["peer"]: row for row in summarize(runs)}
    assert rows["protogen"]["ratio"] == 0.5
    assert rows["protogen-compiled"]["ratio"] == 0.65
    (check,) = check_targets(list(rows.values()))
    assert check["passed"] and check["detail"] == "0.65x"


def test_redis_rows_are_compared_with_redis_server() -> None:
    runs = _runs(
        "redis-set-c50-p16",
        {
            "redis-server": [1000, 1000, 1000],
            "protogen": [300, 450, 400],
            "protogen-compiled": [500, 550, 700],
        },
    )
    rows = {row["peer"]: row for row in summarize(runs)}
    assert rows["protogen"]["ratio"] == 0.4
    assert rows["protogen-compiled"]["ratio"] == 0.55
    checks = {c["target"]: c for c in check_targets(list(rows.values()))}
    pure = checks[">= 0.4x redis-server (pure)"]
    compiled = checks[">= 0.6x redis-server (compiled)"]
    assert pure["passed"] and pure["detail"] == "0.40x"
    assert not compiled["passed"] and compiled["detail"] == "0.55x"


def test_one_redis_benchmark_run_gives_a_row_per_test() -> None:
    from benchlib.scenarios import redis_row

    assert redis_row("redis-c50-p16", "set") == "redis-set-c50-p16"
    assert redis_row("redis-c50-p16", "get") == "redis-get-c50-p16"
