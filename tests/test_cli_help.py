"""The command line explains itself: every option has a help text, and the help is plain text."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from mrbench.cli import COMMANDS, build_parser
from mrbench.training.gpu import acquire_device

RST = ("``", ":func:", ":mod:", ":class:", ":data:")


def _options_without_help(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += _options_without_help(sub, f"{prefix} {name}")
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            missing.append(f"{prefix} {'/'.join(action.option_strings) or action.dest}")
    return missing


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_a_help_text(command: str) -> None:
    parser = argparse.ArgumentParser(prog=f"mrbench {command}")
    importlib.import_module(COMMANDS[command][0]).add_arguments(parser)
    assert _options_without_help(parser, command) == []
    text = parser.format_help()
    assert not any(mark in text for mark in RST), text


def test_top_level_help_is_plain_text() -> None:
    text = build_parser().format_help()
    assert not any(mark in text for mark in RST)
    assert "COMMAND --help" in text
    res = subprocess.run(
        [sys.executable, "-m", "mrbench.cli", "--help"], capture_output=True, text=True
    )
    assert res.returncode == 0 and "``" not in res.stdout


def test_cpu_fallback_message_does_not_speak_of_training() -> None:
    """The same device choice serves translation: its message must not say 'training'."""
    slot = acquire_device("auto", n_devices=0, env={})
    assert slot.device == "cpu" and "training" not in slot.message
