"""`batchgen plan` on a 100,000-row CSV: wall time and peak memory, as ratios to the goals.

    .venv/bin/python benchmarks/plan_100k.py [--rows N]

Runs the real command (`batchgen plan sheet.csv --json`) in a subprocess and reads its peak
RSS from the kernel (ru_maxrss of the child). Goals: under 30 s, under 500 MB.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image


def make_sheet(folder: Path, rows: int) -> Path:
    """A campaign sheet: remote images, a shared local image every 50th row, shots on some."""
    Image.new("RGB", (640, 360), (30, 90, 160)).save(folder / "shared.png")
    path = folder / "sheet.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(
            [
                "prompt",
                "start_image_url",
                "duration",
                "generate_audio",
                "cfg_scale",
                "shot1_prompt",
                "shot1_duration",
                "shot2_prompt",
                "shot2_duration",
            ]
        )
        for i in range(rows):
            image = "shared.png" if i % 50 == 0 else f"https://cdn.example.com/stills/{i}.jpg"
            if i % 10 == 0:
                out.writerow(
                    [
                        f"Scene {i}, slow push-in",
                        image,
                        10,
                        "no",
                        "0.5",
                        "wide establishing shot",
                        4,
                        "close-up",
                        6,
                    ]
                )
            else:
                out.writerow(
                    [
                        f"Scene {i}: the product on a table, warm light, camera orbits",
                        image,
                        5,
                        "yes",
                        "0.5",
                        "",
                        "",
                        "",
                        "",
                    ]
                )
    return path


def main() -> None:
    """Build the sheet, plan it, print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory() as tmp:
        sheet = make_sheet(Path(tmp), rows)
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "batchgen", "plan", str(sheet), "--json"],
            capture_output=True,
            text=True,
            env={**os.environ},
        )
        wall = time.monotonic() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        assert proc.returncode == 0, proc.stderr[-2000:]
        plan = json.loads(proc.stdout)
        assert plan["jobs"] == rows, plan
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(
        f"plan {rows} rows: {plan['jobs']} jobs, {plan['video_seconds']} video seconds, "
        f"est. ${plan['estimated_cost_usd']:.2f}"
    )
    print(
        f"  wall {wall:.1f} s (goal < 30 s, ratio {wall / 30:.2f}); "
        f"peak RSS {peak_mb:.0f} MB (goal < 500 MB, ratio {peak_mb / 500:.2f})"
    )


if __name__ == "__main__":
    main()
