"""The library's error types, in a module that imports nothing of mrbench.

Any module may raise these without importing the module that mostly raises them, so no import
cycle can run through an error type.
"""

from __future__ import annotations


class InputError(RuntimeError):
    """Bad input data: the message names the file and the problem, in one line."""


class ConfigError(ValueError):
    """A bad configuration value; the message names the key."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a loss became NaN); the message names the step and the loss."""
