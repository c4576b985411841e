"""The library's exceptions, torch-free so the Slicer side and the CLI can catch them without torch.

Each message says what is wrong and what to do; front-ends print it as it is.
"""

from __future__ import annotations


class InputError(ValueError):
    """A user-supplied input is unusable; the message says what is wrong and what to do."""


class InputWarning(UserWarning):
    """An input is used but doubtful (thick slices, several series in a folder); one line says why."""


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message says what is wrong and what was expected."""


class Cancelled(RuntimeError):
    """The caller's cancel callback asked to stop; no result was produced."""
