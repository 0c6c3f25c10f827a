"""batchgen: turn a prompt sheet into finished videos on RunComfy's Model API."""

from __future__ import annotations

from importlib.metadata import version

__version__ = version("batchgen")
