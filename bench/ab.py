"""A/B: one benchmark run in two checkouts of fmlab, rounds alternating which
goes first, so both sides meet the machine's drift alike.

    python -m bench.ab --before DIR [--after DIR] [--rounds 3] BENCH [ARGS...]

Each checkout is run with its own ``.venv/bin/python -m bench.BENCH ARGS``
(for example a ``git worktree`` of an older commit, with ``make test`` run in
it once). The figures of each run are read from its output with the
pattern that fits the benchmark (``--pattern REGEX`` for another); the table
gives each figure's median per side and after / before.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

# benchmark -> (pattern of one figure, its name); every match is one sample
PATTERNS = {
    "epoch_speed": (r"fmlab +epoch +(?:[2-9]|\d\d+): +([\d.]+) s", "epoch seconds (after the first)"),
    "sweep_speed": (r"= ([\d.]+) / ([\d.]+) = ([\d.]+)", "stacked s, one-by-one s, ratio"),
    "app_throughput": (
        r"round \d+: headless ([\d,]+) samples/s, app ([\d,]+) samples/s, app/headless ([\d.]+)",
        "headless samples/s, app samples/s, app/headless",
    ),  # fmt: skip
}


def run(checkout: Path, bench: str, args: list[str]) -> str:
    python = checkout / ".venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", f"bench.{bench}", *args], cwd=checkout, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: bench.{bench} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def figures(output: str, pattern: str) -> list[tuple[float, ...]]:
    found = [m.groups() for m in re.finditer(pattern, output)]
    return [tuple(float(v.replace(",", "")) for v in groups) for groups in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=Path.cwd())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pattern", default=None)
    parser.add_argument("bench")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    pattern, what = (options.pattern, "figures") if options.pattern else PATTERNS[options.bench]
    sides = {"before": options.before, "after": options.after}
    samples: dict[str, list[tuple[float, ...]]] = {"before": [], "after": []}
    for round_ in range(1, options.rounds + 1):
        order = ("before", "after") if round_ % 2 else ("after", "before")
        for side in order:
            found = figures(run(sides[side], options.bench, options.args), pattern)
            if not found:
                raise SystemExit(f"{side}: no figure matched {pattern!r}")
            samples[side] += found
            print(f"round {round_} {side:>6}: {found}", flush=True)
    print(f"\nbench.{options.bench} {' '.join(options.args)}: {what}, medians over {options.rounds} rounds")
    columns = len(samples["before"][0])
    for column in range(columns):
        before = statistics.median(s[column] for s in samples["before"])
        after = statistics.median(s[column] for s in samples["after"])
        print(
            f"  figure {column + 1}: before {before:,.3f}  after {after:,.3f}  after/before {after / before:.3f}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
