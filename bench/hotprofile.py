"""Where the hot path's time goes: bench/hotpath.py's workload under a profiler.

    .venv/bin/python bench/hotprofile.py                          # cProfile, typed handler
    .venv/bin/python bench/hotprofile.py --handler silent --depth 16
    .venv/bin/python bench/hotprofile.py --callgrind --depth 16   # C functions, per frame
    .venv/bin/python bench/hotprofile.py --callgrind --compile    # compiled codec+handler

cProfile shows Python functions (tottime per call, call counts per read event:
how many Python calls a frame costs). `--callgrind` runs the workload under
valgrind twice with different event counts and prints, per C function
(inclusive), the difference in instructions divided by the frames in between:
the interpreter's and Cython's own costs (calls, attribute lookups, allocation),
exact on a shared machine. py-spy (`py-spy record -o out.svg -- python
bench/hotpath.py ...`) gives a flame graph of the same workload where it is
installed; on a real server, `py-spy top --pid PID` while `make bench` runs.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LINE = re.compile(r"\s*([\d,]+) \([^)]*\)\s+(.*)$")


def hotpath_args(args: argparse.Namespace, events: int) -> list[str]:
    return [
        "--handler",
        args.handler,
        "--depth",
        str(args.depth),
        "--conns",
        str(args.conns),
        "--size",
        str(args.size),
        "--events",
        str(events),
        "--rounds",
        "1",
        "--no-warmup",
    ]


def with_cprofile(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE))
    import hotpath

    sys.argv = ["hotpath.py", *hotpath_args(args, args.events)]
    profile = cProfile.Profile()
    profile.runcall(hotpath.main)
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


def annotate(out: Path) -> dict[str, int]:
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts = {}
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            counts[match.group(2)] = int(match.group(1).replace(",", ""))
    return counts


def with_callgrind(args: argparse.Namespace) -> None:
    small, large = args.conns * 20, args.conns * 140
    scratch = Path(tempfile.mkdtemp(prefix="protogen-profile-"))
    env = dict(os.environ, PYTHONHASHSEED="0")
    if args.compile:
        env["HOTPATH_COMPILE"] = "1"
    if "HOTPATH_GENERATED" not in env and args.handler not in ("runtime", "uvloop-typed"):
        sys.path.insert(0, str(HERE))
        import hotpath

        build = scratch / "generated"
        hotpath.build_into(build, compiled=args.compile)
        env["HOTPATH_GENERATED"] = str(build)
    counts = []
    for events in (small, large):
        out = scratch / f"callgrind.{events}"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                str(HERE / "hotpath.py"),
                *hotpath_args(args, events),
            ],
            capture_output=True,
            check=True,
            env=env,
        )
        counts.append(annotate(out))
    frames = (large - small) * args.depth
    rows = sorted(((counts[1][k] - counts[0].get(k, 0)) / frames, k) for k in counts[1])
    print(f"instructions per frame (inclusive), {args.handler}, depth {args.depth}")
    for per_frame, name in reversed(rows[-args.top :]):
        print(f"{per_frame:9,.0f}  {name[-110:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handler", default="typed", help="as bench/hotpath.py")
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--size", type=int, default=64, help="payload bytes per frame")
    parser.add_argument("--events", type=int, default=20_000, help="cProfile only")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    if args.compile:
        os.environ["HOTPATH_COMPILE"] = "1"
    if args.callgrind:
        with_callgrind(args)
    else:
        with_cprofile(args)


if __name__ == "__main__":
    main()
