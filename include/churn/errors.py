"""Which errors a retry could fix, decided in one place for every phase.

Airflow retries a failed task (this DAG: twice, with growing waits of minutes) unless it
raises Airflow's ``AirflowFailException``, which fails the task at once. A retry can only
help when something outside the pipeline failed and may come back: a warehouse, MLflow
server or object store that could not be reached or answered "busy", a dropped connection,
a timeout, a lock held by another writer. :func:`is_transient` recognises exactly those,
from an explicit list. Everything else a phase raises (bad data, a contract,
configuration or Connection, a login refused, a model that cannot be used, a bug) would
fail the same way again: :func:`churn.manifest.run_phase`, the envelope every phase runs
in, re-raises it as a :class:`PhaseError`, a :class:`PermanentError`, so the task fails
at once instead of waiting through retries. An error this module does not recognise is
permanent: one clear failure beats minutes of waiting for a result that cannot change.

With ``airflow_connections`` and ``locations``, this is one of the three modules that
import Airflow. It never imports a client library: an error can only come from a library
the process has already imported, so its exception types are looked up in ``sys.modules``.
"""

from __future__ import annotations

import errno
import re
import socket
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowRuntimeError,
    AirflowSkipException,
)

if TYPE_CHECKING:
    from churn.handoffs import SkippedPhases


# How much of a value from the data a message or report quotes: a cell may hold a megabyte.
SHOWN_CHARACTERS = 80


def shortened(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    """``text`` as a message or report quotes it: whole, or its first ``limit`` characters, an
    ellipsis and its full length."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


class PermanentError(AirflowFailException):
    """A problem that a retry cannot fix (bad data, a broken contract, configuration or
    Connection, an unusable model): the task fails at once instead of waiting through retries."""


class PhaseError(PermanentError):
    """An error a phase's work raised that is not an outage, re-raised (from the original,
    whose message it keeps) so that Airflow fails the task at once."""

    def __init__(self, phase: str, error_type: str, message: str) -> None:
        super().__init__(phase, error_type, message)  # as constructed, so that it pickles
        self.phase, self.error_type, self.message = phase, error_type, message

    def __str__(self) -> str:
        return f"{self.phase} failed with {self.error_type}, which a retry cannot fix: {self.message}"


class PhaseSkipped(AirflowSkipException):
    """A phase with nothing useful to do for this run (see ``skipped``, which says which phases
    and why): Airflow marks its task, and the tasks that need its result, skipped, and logs
    the reason."""

    def __init__(self, skipped: SkippedPhases) -> None:
        super().__init__(skipped.reason)  # Airflow logs the first argument as the reason
        self.skipped = skipped

    def __reduce__(self):
        return type(self), (self.skipped,)


# Types that mean a server, or the network to it, failed: by the module that defines them.
_OUTAGE_TYPES = {
    "builtins": ("ConnectionError", "TimeoutError"),  # refused, reset, broken pipe; socket timeouts
    "requests.exceptions": ("ConnectionError", "Timeout", "RetryError", "ChunkedEncodingError"),
    "urllib3.exceptions": ("NewConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ProtocolError"),
    "botocore.exceptions": ("ConnectionError", "HTTPClientError"),  # endpoint unreachable, timeouts
    "sqlalchemy.exc": ("DisconnectionError", "TimeoutError"),  # a dropped connection; the pool's timeout
}
# Checked first, as these subclass the types above: a certificate refused is not an outage.
_REFUSED_TYPES = {
    "requests.exceptions": ("SSLError",),
    "urllib3.exceptions": ("SSLError",),
    "botocore.exceptions": ("SSLError",),
}
_NETWORK_ERRNOS = {errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTUNREACH, errno.EHOSTDOWN}
# PostgreSQL's SQLSTATEs for a server that cannot serve now: connection exceptions (08),
# insufficient resources (53), serialization failure, deadlock, lock or statement timeout,
# and a server shutting down, starting up or closing an idle session.
_TRANSIENT_SQLSTATE_CLASSES = {"08", "53"}
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03", "57P05"}
_SQLITE_BUSY = re.compile(r"database( table| schema)? is locked")
_MLFLOW_BUSY_CODES = {
    "TEMPORARILY_UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "REQUEST_LIMIT_EXCEEDED",
    "RESOURCE_EXHAUSTED",
}
_BOTO_BUSY_CODES = {"Throttling", "ThrottlingException", "SlowDown", "RequestTimeout", "ServiceUnavailable"}
# A server that refuses the login or names a database it does not have answers through the
# same connection errors as one that is down; waiting changes neither.
_REFUSED_BY_SERVER = re.compile(
    r"authentication failed|no pg_hba\.conf entry|no password supplied|access denied"
    r'|(database|role) "[^"]*" does not exist',
    re.IGNORECASE,
)


def left_to_airflow(error: BaseException) -> bool:
    """Whether a task that raised ``error`` should go to Airflow as it is: Airflow's own
    exceptions (:class:`PermanentError` among them) say what they mean, and transient errors
    are for Airflow's retries. Any other error needs re-raising as a :class:`PermanentError`."""
    return isinstance(error, AirflowException | AirflowRuntimeError) or is_transient(error)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is an outage a later retry could get past.

    The error and those it was raised from (or while handling) are asked in turn, outermost
    first (a ``WarehouseError`` says no more than the driver error inside it); the first that
    is a recognised outage, or is known to be permanent, decides. None recognised: permanent.
    """
    for link in _chain(error):
        verdict = _verdict(link)
        if verdict is not None:
            return verdict
    return False


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, then each error it was raised from or while handling, as tracebacks show them."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)


def _verdict(link: BaseException) -> bool | None:
    """True: an outage; False: known to be permanent; None: this link does not say."""
    if isinstance(link, PermanentError) or _is_one_of(link, _REFUSED_TYPES):
        return False
    outage = _is_outage(link)
    if outage and _REFUSED_BY_SERVER.search(str(link)):
        return False
    return outage


def _is_outage(link: BaseException) -> bool | None:
    if _is_one_of(link, _OUTAGE_TYPES):
        return True
    if isinstance(link, socket.gaierror) or (isinstance(link, OSError) and link.errno in _NETWORK_ERRNOS):
        return True
    return _database_outage(link) or _http_outage(link) or None


def _database_outage(link: BaseException) -> bool:
    sqlalchemy = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy and isinstance(link, sqlalchemy.DBAPIError) and link.connection_invalidated:
        return True  # SQLAlchemy found the connection dead
    sqlite = sys.modules.get("sqlite3")
    if sqlite and isinstance(link, sqlite.OperationalError):
        return bool(_SQLITE_BUSY.search(str(link)))  # the rest (syntax, no such table) is permanent
    for driver in ("psycopg", "psycopg2"):
        module = sys.modules.get(driver)
        if module and isinstance(link, module.Error):
            sqlstate = getattr(link, "sqlstate", None) or getattr(link, "pgcode", None)
            if sqlstate is None:  # libpq could not connect, or lost the server
                return isinstance(link, module.OperationalError)
            return sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES or sqlstate in _TRANSIENT_SQLSTATES
    return False


def _http_outage(link: BaseException) -> bool:
    """A server's answer that means "not now": HTTP 429 or 5xx, or MLflow's or AWS's word for it."""
    requests = sys.modules.get("requests.exceptions")
    if requests and isinstance(link, requests.HTTPError) and link.response is not None:
        return _busy_status(link.response.status_code)
    mlflow = sys.modules.get("mlflow.exceptions")
    if mlflow and isinstance(link, mlflow.MlflowException):
        # Only a server's answer (RestException) is judged by its status: MLflow gives every
        # error it raises itself the code INTERNAL_ERROR, HTTP 500, by default.
        return link.error_code in _MLFLOW_BUSY_CODES or (
            isinstance(link, mlflow.RestException) and _busy_status(link.get_http_status_code())
        )
    botocore = sys.modules.get("botocore.exceptions")
    if botocore and isinstance(link, botocore.ClientError):
        status = link.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return _busy_status(status) or link.response.get("Error", {}).get("Code") in _BOTO_BUSY_CODES
    return False


def _busy_status(status: int) -> bool:
    return status == 429 or status >= 500


def _is_one_of(link: BaseException, types_by_module: dict[str, tuple[str, ...]]) -> bool:
    return any(
        isinstance(link, getattr(sys.modules[module], name))
        for module, names in types_by_module.items()
        if module in sys.modules
        for name in names
    )
