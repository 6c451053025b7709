"""Medians, ratios to uvloop, the stdout table, the JSON file and the PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import median
from typing import Any

from .peers import BASELINE, TYPED_BASELINE, baseline_of

THROUGHPUT, MEMORY, CAPACITY = "throughput", "memory", "capacity"


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (scenario, peer): medians over rounds and the ratio to uvloop
    (req/s ratio for throughput, RSS-per-connection ratio for memory)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["scenario"], run["peer"]), []).append(run)
    rows = []
    for (scenario, peer), group in groups.items():
        good = [r for r in group if r.get("ok")]
        row: dict[str, Any] = {
            "scenario": scenario,
            "family": group[0]["family"],
            "peer": peer,
            "runs": len(group),
            "ok_runs": len(good),
            "errors": sum(int(r.get("errors", 0)) for r in group),
            "first_error": next(
                (r["first_error"] for r in group if r.get("first_error")), ""
            ),
        }
        for key in ("rps", "p50_us", "p99_us", "bytes_per_conn", "held", "connect_s"):
            values = [r[key] for r in good if r.get(key) is not None]
            row[key] = median(values) if values else None
        rows.append(row)
    for row in rows:
        wanted = baseline_of(row["scenario"], row["peer"])
        base = next(
            (
                r
                for r in rows
                if r["scenario"] == row["scenario"] and r["peer"] == wanted
            ),
            None,
        )
        metric = "bytes_per_conn" if row["family"] == MEMORY else "rps"
        if base and base.get(metric) and row.get(metric) is not None:
            row["ratio"] = row[metric] / base[metric]
        else:
            row["ratio"] = None
        row["paired_ratio"] = (
            paired_ratio(runs, row["scenario"], row["peer"])
            if row["family"] == THROUGHPUT
            else None
        )
    return rows


def paired_ratio(runs: list[dict[str, Any]], scenario: str, peer: str) -> float | None:
    """Median over rounds of this peer's req/s over uvloop's *in the same round*.

    Peers take turns within a round, so a round's pair shares the machine's
    state; on a noisy machine this is steadier than a ratio of two medians.
    """
    by_round: dict[int, dict[str, float]] = {}
    for run in runs:
        if (
            run["scenario"] == scenario
            and run.get("ok")
            and run.get("rps")
            and "round" in run
        ):
            by_round.setdefault(run["round"], {})[run["peer"]] = run["rps"]
    base = baseline_of(scenario, peer)
    ratios = [
        pair[peer] / pair[base]
        for pair in by_round.values()
        if peer in pair and base in pair
    ]
    return median(ratios) if ratios else None


def _fmt(value: Any, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'scenario':<26} {'peer':<23} {'req/s':>11} {'x base':>8} {'paired':>6} "
        f"{'p50 us':>9} {'p99 us':>9} {'B/conn':>8} {'held':>6} {'errors':>6}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['scenario']:<26} {row['peer']:<23} {_fmt(row['rps'], ',.0f'):>11} "
            f"{_fmt(row['ratio'], '.2f'):>8} {_fmt(row.get('paired_ratio'), '.2f'):>6} "
            f"{_fmt(row['p50_us'], '.0f'):>9} "
            f"{_fmt(row['p99_us'], '.0f'):>9} {_fmt(row['bytes_per_conn'], '.0f'):>8} "
            f"{_fmt(row['held'], '.0f'):>6} {row['errors']:>6}"
        )
    return "\n".join(lines)


def write_json(
    path: Path, meta: dict[str, Any], runs: list, rows: list, skipped: dict
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "skipped": skipped, "summary": rows, "runs": runs}
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def write_chart(path: Path, rows: list[dict[str, Any]], title: str) -> bool:
    """Grouped bars: throughput as a ratio to uvloop per scenario, and idle-connection
    memory in bytes. False if matplotlib is missing or there is nothing to draw."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    speed = [r for r in rows if r["family"] == THROUGHPUT and r["ratio"] is not None]
    memory = [
        r for r in rows if r["family"] == MEMORY and r["bytes_per_conn"] is not None
    ]
    if not speed and not memory:
        return False
    panels = [p for p in (speed, memory) if p]
    # One colour per peer across both panels.
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    every_peer = list(dict.fromkeys(r["peer"] for r in speed + memory))
    colour = {peer: palette[i % len(palette)] for i, peer in enumerate(every_peer)}
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(12, 4.5 * len(panels)), squeeze=False
    )
    for ax, panel in zip(axes[:, 0], panels):
        scenarios = list(dict.fromkeys(r["scenario"] for r in panel))
        peers = list(dict.fromkeys(r["peer"] for r in panel))
        width = min(0.25, 0.8 / max(1, len(peers)))
        for i, peer in enumerate(peers):
            values = []
            for scenario in scenarios:
                row = next(
                    (
                        r
                        for r in panel
                        if r["scenario"] == scenario and r["peer"] == peer
                    ),
                    None,
                )
                if panel is speed:
                    values.append(row["ratio"] if row else 0)
                else:
                    values.append(row["bytes_per_conn"] if row else 0)
            xs = [x + (i - (len(peers) - 1) / 2) * width for x in range(len(scenarios))]
            ax.bar(xs, values, width, label=peer, color=colour[peer])
        ax.set_xlim(-0.6, max(len(scenarios), 3) - 0.4)  # thin bars even for one group
        ax.set_xticks(range(len(scenarios)))
        ax.set_xticklabels(scenarios, rotation=20, ha="right", fontsize=8)
        if panel is speed:
            ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
            ax.set_ylabel("req/s relative to uvloop (higher is better)")
        else:
            ax.axhline(
                600, color="red", linewidth=0.8, linestyle="--", label="target 600 B"
            )
            ax.set_ylabel("RSS per idle connection, bytes (lower is better)")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def check_targets(
    rows: list[dict[str, Any]], peer: str = "protogen"
) -> list[dict[str, Any]]:
    """Issue 7's targets for the generated server, for the scenarios that ran."""
    by_key = {(r["scenario"], r["peer"]): r for r in rows}
    checks = []

    def add(target: str, scenario: str, passed: bool, detail: str) -> None:
        checks.append(
            {"target": target, "scenario": scenario, "passed": passed, "detail": detail}
        )

    for row in rows:
        name, ratio = row["scenario"], row.get("ratio")
        if row.get("paired_ratio") is not None and ratio is not None:
            ratio = min(ratio, row["paired_ratio"])
        if name.startswith("echo-") and ratio is not None:
            if row["peer"] == "protogen-typed":
                add(
                    f">= 1.2x {TYPED_BASELINE} (typed, pure)",
                    name,
                    ratio >= 1.2,
                    f"{ratio:.2f}x",
                )
            elif row["peer"] == "protogen-typed-compiled" and "-d16-" in name:
                add(
                    f">= 2.5x {TYPED_BASELINE} (typed, compiled)",
                    name,
                    ratio >= 2.5,
                    f"{ratio:.2f}x",
                )
        if name.startswith("memcached"):
            if row["peer"] == "protogen-compiled" and ratio is not None:
                add(
                    ">= 0.6x memcached -t 1 (compiled)",
                    name,
                    ratio >= 0.6,
                    f"{ratio:.2f}x",
                )
            continue
        if name.startswith("redis-"):
            goals = {"protogen": ("pure", 0.4), "protogen-compiled": ("compiled", 0.6)}
            if row["peer"] in goals and ratio is not None:
                mode, goal = goals[row["peer"]]
                add(
                    f">= {goal}x redis-server ({mode})",
                    name,
                    ratio >= goal,
                    f"{ratio:.2f}x",
                )
            continue
        if name.startswith("http-distinct") and row["peer"] == "protogen-compiled":
            if ratio is not None:
                add(
                    ">= 1.5x uvloop+httptools (compiled)",
                    name,
                    ratio >= 1.5,
                    f"{ratio:.2f}x",
                )
            continue
        if row["peer"] != peer:
            continue
        name, ratio = row["scenario"], row.get("ratio")
        if row.get("paired_ratio") is not None:
            # Both estimates must hold: the ratio of medians and the median of the
            # per-round ratios (see paired_ratio).
            ratio = min(ratio, row["paired_ratio"])
        base = by_key.get((name, BASELINE), {})
        if name == "echo-d16-64B-c50" and ratio is not None:
            add(">= 1.3x uvloop", name, ratio >= 1.3, f"{ratio:.2f}x")
        elif name.startswith("echo-d1-") and ratio is not None:
            p99, base_p99 = row.get("p99_us"), base.get("p99_us")
            ok = (
                ratio >= 1.0
                and p99 is not None
                and base_p99 is not None
                and p99 <= base_p99
            )
            add(
                ">= 1.0x uvloop, p99 <= uvloop's",
                name,
                ok,
                f"{ratio:.2f}x, p99 {_fmt(p99, '.0f')} vs {_fmt(base_p99, '.0f')} us",
            )
        elif name.startswith("http-distinct") and ratio is not None:
            add(">= 1.0x uvloop+httptools (pure)", name, ratio >= 1.0, f"{ratio:.2f}x")
        elif row["family"] == MEMORY and row.get("bytes_per_conn") is not None:
            value = row["bytes_per_conn"]
            add("<= 600 B per idle connection", name, value <= 600, f"{value:.0f} B")
        elif row["family"] == CAPACITY:
            wanted = int(name.rsplit("-c", 1)[-1])
            held = row.get("held") or 0
            add(
                f"{wanted} connections on one loop",
                name,
                held == wanted and row["errors"] == 0,
                f"held {held:.0f}, errors {row['errors']}",
            )
    return checks


def format_targets(checks: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{'PASS' if c['passed'] else 'MISS'}  {c['scenario']:<26} {c['target']:<42} {c['detail']}"
        for c in checks
    )
