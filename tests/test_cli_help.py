"""Every command documents itself; the public library surface is what __all__ says."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import batchgen
from batchgen.cli import cli


@pytest.mark.parametrize("command", sorted(set(cli.commands) - {"emulator"}))
def test_every_command_has_help(command: str) -> None:
    """`batchgen COMMAND --help` works and says something."""
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert cli.commands[command].help
    assert "Usage:" in result.output


def test_emulator_command_passes_help_through() -> None:
    """`batchgen emulator --help` shows the emulator's own options, faults included."""
    result = CliRunner().invoke(cli, ["emulator", "--help"])
    assert result.exit_code == 0
    assert "--fail-5xx" in result.output and "--port" in result.output


def test_exported_members() -> None:
    """Everything in __all__ exists, and the list is sorted."""
    assert batchgen.__all__ == sorted(batchgen.__all__)
    for name in batchgen.__all__:
        assert hasattr(batchgen, name), name
    assert batchgen.__version__
