"""Shared fixtures: the emulator on loopback, a clean environment, manifests that fit it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchgen.emulator import Emulator, EmulatorConfig

TOKEN = "tok-SECRET-5f3c9a7e"  # distinctive, so tests can grep for leaks
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No token or base URL leaks in from the developer's shell."""
    for name in ("RUNCOMFY_API_TOKEN", "RUNCOMFY_TOKEN", "RUNCOMFY_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    """Start emulators with a given config; all are stopped at the end of the test."""
    started: list[Emulator] = []

    def make(**config: Any) -> Emulator:
        config.setdefault("token", TOKEN)
        config.setdefault("gen_seconds", (0.0, 0.0))
        config.setdefault("seed", 7)
        emulator = Emulator(EmulatorConfig(**config))
        emulator.start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    """An emulator with instant generations and no faults."""
    return make_emulator()


def write_manifest(path: Path, n: int, *, prefix: str = "job", **extra: Any) -> Path:
    """A YAML manifest of ``n`` small jobs with remote https images and explicit ids."""
    doc: dict[str, Any] = {
        "defaults": {"duration": 3, "generate_audio": False},
        "jobs": [
            {
                "id": f"{prefix}-{i:03d}",
                "prompt": f"shot {i}: a lighthouse at dusk, slow push-in",
                "start_image_url": f"https://images.example.com/{prefix}-{i}.png",
            }
            for i in range(n)
        ],
    }
    doc.update(extra)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def batchgen_cmd(*args: str) -> list[str]:
    """The command line that runs batchgen in a fresh interpreter."""
    return [sys.executable, "-m", "batchgen", *args]


def run_cli(
    args: list[str], *, token: str | None = TOKEN, timeout: float = 120, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run batchgen in a subprocess (real signals, real exit codes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    if token is not None:
        env["RUNCOMFY_API_TOKEN"] = token
    return subprocess.run(
        batchgen_cmd(*args), env=env, capture_output=True, text=True, timeout=timeout, **kw
    )
