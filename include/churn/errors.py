"""The one distinction every phase's errors share: whether a retry could help.

Airflow ends a task that raises its ``AirflowFailException`` at once, without the retries
meant for outages, so every error a retry cannot fix is one. With ``airflow_connections``
and ``locations``, this is one of the three modules that import Airflow.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException


class PermanentError(AirflowFailException):
    """A problem that a retry cannot fix (bad data, a broken contract, configuration or
    Connection, an unusable model): the task fails at once instead of waiting through retries."""
