"""The one distinction every phase's errors share: whether a retry could help."""

from __future__ import annotations


class PermanentError(Exception):
    """A problem that a retry cannot fix (bad data, a broken contract or configuration, an
    unusable model): the task fails at once instead of waiting through retries."""
