"""Incident response for ``churn_pipeline`` through Airflow: the task failure callback, the
check that the date's scores were written by their deadline (the ``churn_scores_due`` DAG),
and the DAGs' owner links, all addressed by the RACI matrix (see :mod:`churn.alerts`) and
routed by ``alerts.routes`` in ``pipeline.yaml``.

Like :mod:`churn.airflow_connections` and :mod:`churn.airflow_approval`, it is where the
package meets Airflow: in the package, not beside the DAG files, so every way of loading the
DAGs finds it (the demo's DagBag does not put the DAG folder on ``sys.path``).

Delivery uses the notifiers of providers Airflow already installs: ``SmtpNotifier``
(``apache-airflow-providers-smtp``) for e-mail and ``HttpNotifier``
(``apache-airflow-providers-http``) for webhooks, which posts the alert as JSON to the URL of
an HTTP Connection, so a webhook's token stays in the Connection. A notifier of our own would
duplicate what these do (Connections, authentication, retries of the session) for no gain.
The notifiers' ``notify`` is called directly: calling the notifier would first render its
fields as Jinja templates, and an error message may hold ``{{``.
"""

from __future__ import annotations

import html
import logging
from datetime import date, datetime
from typing import Any

from churn.settings import load_settings, redact_text

logger = logging.getLogger(__name__)


def owner_links() -> dict[str, str]:
    """Each role with a route, to where it is reached: its page, else a mailto: link to its addresses."""
    routes = load_settings().config.alerts.routes
    return {role: route.page or f"mailto:{','.join(route.email)}" for role, route in routes.items()}


def on_task_failure(context: dict[str, Any]) -> None:
    """A task failed: tell its phase's roles (one message, addressed per the matrix), with the
    task, the first lines of the error, the try and a link to its log."""
    from churn.alerts import task_failure_alert

    ti = context["ti"]
    settings, in_warehouse = settings_for_alerts()
    alert = task_failure_alert(
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        map_index=ti.map_index,
        try_number=ti.try_number,
        error=context.get("exception") or "the task failed without an error (killed, or timed out)",
        log_url=ti.log_url,
        score_date=_score_date(context["params"].get("score_date"), context.get("logical_date")),
        error_lines=settings.config.alerts.error_lines,
    )
    _record_and_send(alert, settings, context, in_warehouse=in_warehouse)


def check_scores_due(context: dict[str, Any]) -> str:
    """The scores deadline: if the warehouse holds no scores for the date whose ``alerts.scores_due``
    this run marks, tell the score phase's roles. Returns what it found, in words.

    It needs the warehouse: a Connection that cannot be read fails the task, whose failure
    alert then goes to Incident Response's roles."""
    from airflow.configuration import conf

    from churn.airflow_connections import task_settings
    from churn.alerts import missing_scores_alert

    run, due = context["dag_run"], context["logical_date"]
    settings = task_settings(warehouse=True)
    base_url = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    alert = missing_scores_alert(
        settings,
        dag_id=run.dag_id,
        run_id=run.run_id,
        score_date=due.date(),
        deadline=due,
        log_url=f"{base_url}/dags/{run.dag_id}/runs/{run.run_id}",
    )
    if alert is None:
        return f"the scores for {due.date()} were written by {due:%H:%M} UTC"
    _record_and_send(alert, settings, context)
    return alert.error


def settings_for_alerts():
    """The settings with the warehouse Connection applied, and whether it could be read. When
    it cannot, the alert is still kept in the alerts file and sent: the failure being reported
    matters more than this one."""
    from churn.airflow_connections import task_settings

    try:
        return task_settings(warehouse=True), True
    except Exception as error:
        logger.warning(
            "cannot read the warehouse Connection: %s; the alert is kept in the alerts file only",
            redact_text(str(error)),
        )
        return load_settings(), False


def _score_date(chosen: str | None, logical_date: datetime | str | None) -> date | None:
    """The run's score date as ingest resolves it: the trigger's choice, else the logical date's."""
    if chosen:
        return date.fromisoformat(str(chosen))
    if isinstance(logical_date, str):
        logical_date = datetime.fromisoformat(logical_date)
    return logical_date.date() if logical_date else None


def _record_and_send(alert, settings, context: dict[str, Any], *, in_warehouse: bool = True) -> None:
    """Keep the alert locally; if it is new, send it through every configured route. A route
    that cannot be reached is logged, never raised: the alert is recorded either way."""
    from churn.alerts import recipients, record_alert

    if not record_alert(alert, settings, in_warehouse=in_warehouse):
        logger.info("alert %s was recorded and sent before: not sent again", alert.key)
        return
    config = settings.config.alerts
    logger.warning("%s: to %s, informing %s", alert.subject(), ", ".join(alert.to), ", ".join(alert.informed))
    to, copied = recipients(alert.to, config.routes), recipients(alert.informed, config.routes)
    if (to or copied) and _connection_readable(config.smtp_conn_id, "SMTP"):
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        email = SmtpNotifier(
            to=to or copied,
            cc=[address for address in copied if address not in to] if to else None,
            subject=alert.subject(),
            html_content=f"<pre>{html.escape(alert.text())}</pre>",
            smtp_conn_id=config.smtp_conn_id,
        )
        _send(email, f"e-mail to {', '.join(to or copied)}", context)
    hooks = dict.fromkeys(
        config.routes[role].webhook_conn_id
        for role in (*alert.to, *alert.informed)
        if role in config.routes and config.routes[role].webhook_conn_id
    )
    for conn_id in hooks:
        from airflow.providers.http.notifications.http import HttpNotifier

        payload = {"alert_key": alert.key, "subject": alert.subject(), **alert.model_dump(mode="json")}
        _send(HttpNotifier(http_conn_id=conn_id, json=payload), f"the webhook of Connection {conn_id!r}", context)


def _connection_readable(conn_id: str, kind: str) -> bool:
    """Whether the Connection ``conn_id`` is defined and may be read here."""
    from churn.airflow_connections import airflow_connection

    try:
        defined = airflow_connection(conn_id) is not None
    except Exception as error:
        logger.warning(
            "cannot read the %s Connection %r: %s; the alert is not sent there",
            kind,
            conn_id,
            redact_text(str(error)),
        )
        return False
    if not defined:
        logger.info("no %s Connection %r is defined: the alert is not sent there", kind, conn_id)
    return defined


def _send(notifier, description: str, context: dict[str, Any]) -> None:
    try:
        notifier.notify(context)
    except Exception as error:  # one unreachable route must not stop the others
        logger.warning("could not send the alert as %s: %s", description, redact_text(str(error)))
    else:
        logger.info("sent the alert as %s", description)
