"""A RunComfy-compatible emulator for tests, benchmarks and the demo. Imports nothing from
the client side of batchgen."""

from __future__ import annotations

from .faults import Faults
from .server import EmulatedJob, Emulator, EmulatorConfig, Hit, ServedFile, Submission

__all__ = ["EmulatedJob", "Emulator", "EmulatorConfig", "Faults", "Hit", "ServedFile", "Submission"]
