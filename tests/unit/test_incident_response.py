"""The Airflow side of incident response: an alert reaches a real webhook on loopback through
Airflow's HttpNotifier and an HTTP Connection, and a real SMTP server on loopback through
Airflow's SmtpNotifier and an SMTP Connection, once each, and a route that cannot be reached
leaves the alert recorded anyway."""

from __future__ import annotations

import email
import email.policy
import html
import json
import socketserver
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

import pytest

from churn.alerts import ALERTS_FILE, read_alerts, task_failure_alert
from churn.settings import AlertRoute
from tests.conftest import free_port

Server = TypeVar("Server", bound=socketserver.BaseServer)


class WebhookReceiver(ThreadingHTTPServer):
    """A webhook endpoint on loopback that keeps every JSON body posted to it."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"path": self.path, "json": json.loads(body)})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def serving(server: Server) -> Iterator[Server]:
    """``server`` serving on a thread of its own until the block ends, then closed."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def receiving_webhooks() -> AbstractContextManager[WebhookReceiver]:
    """A :class:`WebhookReceiver` serving until the block ends."""
    return serving(WebhookReceiver())


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with receiving_webhooks() as server:
        yield server


@dataclass(frozen=True)
class Delivery:
    """One message as an SMTP server received it: the envelope and the message itself."""

    sender: str
    recipients: list[str]
    message: EmailMessage


class SmtpSession(socketserver.StreamRequestHandler):
    """The server side of one SMTP conversation (RFC 5321's minimum, no extensions): it accepts
    every message and hands it to its server."""

    server: SmtpReceiver

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        self.reply("220 127.0.0.1 test SMTP server")
        sender, recipients = "", []
        while line := self.rfile.readline():
            command = line.decode().rstrip("\r\n")
            verb, _, argument = command.partition(" ")
            verb = verb.upper()
            if verb in {"EHLO", "HELO"}:
                self.reply("250 127.0.0.1")
            elif verb == "MAIL":
                sender, recipients = argument.partition(":")[2].strip("<> "), []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(argument.partition(":")[2].strip("<> "))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                lines = []
                while (data := self.rfile.readline()) not in {b".\r\n", b""}:
                    lines.append(data[1:] if data.startswith(b"..") else data)  # undo dot-stuffing
                message = email.message_from_bytes(b"".join(lines), policy=email.policy.default)
                self.server.received.append(Delivery(sender, recipients, message))
                self.reply("250 OK: queued")
            elif verb in {"RSET", "NOOP"}:
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 command not implemented")


class SmtpReceiver(socketserver.ThreadingTCPServer):
    """An SMTP server on loopback that keeps every message delivered to it."""

    daemon_threads = True

    def __init__(self) -> None:
        self.received: list[Delivery] = []
        super().__init__(("127.0.0.1", 0), SmtpSession)

    @property
    def port(self) -> int:
        return self.server_address[1]


@pytest.fixture
def smtp_server() -> Iterator[SmtpReceiver]:
    with serving(SmtpReceiver()) as server:
        yield server


def routed(settings, routes: dict[str, AlertRoute]):
    alerts = settings.config.alerts.model_copy(update={"routes": routes})
    return settings.overridden(config=settings.config.model_copy(update={"alerts": alerts}))


def validate_failure():
    return task_failure_alert(
        dag_id="churn_pipeline",
        run_id="manual__2026-11-29T02:00:00+00:00",
        task_id="validate",
        map_index=-1,
        try_number=1,
        error="validate failed with ContractViolation, which a retry cannot fix: tenure: 'twelve'",
        log_url="http://localhost:8080/dags/churn_pipeline/runs/r/tasks/validate?try_number=1",
        score_date=date(2026, 11, 29),
        error_lines=12,
    )


def test_an_alert_is_posted_once_to_each_webhook_its_roles_are_reached_by(settings, webhook, monkeypatch):
    from churn.airflow_alerts import _record_and_send

    # The Connection holds the URL (and in real life its token); pipeline.yaml only its id.
    monkeypatch.setenv(
        "AIRFLOW_CONN_DATA_TEAM_HOOK", json.dumps({"conn_type": "http", "host": f"{webhook.url}/hooks/T0/secret"})
    )
    routes = {
        "data_engineer": AlertRoute(email=("de@example.com",), webhook_conn_id="data_team_hook"),
        "product_manager": AlertRoute(page="https://chat.example.com/pm", webhook_conn_id="data_team_hook"),
        "devops_engineer": AlertRoute(email=("ops@example.com",)),
        # Consulted in validate, never told: its webhook must not be called.
        "ml_engineer": AlertRoute(email=("ml@example.com",), webhook_conn_id="ml_hook"),
    }
    settings = routed(settings, routes)
    alert = validate_failure()

    _record_and_send(alert, settings, {})
    _record_and_send(alert, settings, {})  # the callback ran twice

    (posted,) = webhook.received
    assert posted["path"] == "/hooks/T0/secret"
    message = posted["json"]
    assert (message["kind"], message["task_id"], message["try_number"]) == ("task_failure", "validate", 1)
    assert message["to"] == ["data_engineer"] and message["informed"] == ["devops_engineer", "product_manager"]
    assert message["log_url"] == alert.log_url and "tenure: 'twelve'" in message["error"]
    assert len(read_alerts(settings.state_dir / ALERTS_FILE)) == 1


def test_an_alert_is_e_mailed_once_to_exactly_its_roles_addresses_through_an_smtp_connection(
    settings, smtp_server, monkeypatch
):
    from churn.airflow_alerts import _record_and_send

    # A plain-text SMTP server on loopback: the README's Connection for port 587 with the
    # encryption switched off (disable_ssl, disable_tls), as the provider's Connection allows.
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp_server.port,
                "extra": {
                    "from_email": "churn-alerts@example.com",
                    "disable_ssl": True,
                    "disable_tls": True,
                    "retry_limit": 0,
                    "timeout": 10,
                },
            }
        ),
    )
    routes = {
        "data_engineer": AlertRoute(email=("de@example.com", "de-oncall@example.com")),
        "devops_engineer": AlertRoute(email=("ops@example.com",)),
        # Informed too, but reached on a page only: no address to copy.
        "product_manager": AlertRoute(page="https://chat.example.com/pm"),
        # Consulted in validate, never told.
        "ml_engineer": AlertRoute(email=("ml@example.com",)),
    }
    settings = routed(settings, routes)
    alert = validate_failure()

    _record_and_send(alert, settings, {})
    _record_and_send(alert, settings, {})  # the callback ran twice

    (delivery,) = smtp_server.received
    assert delivery.sender == "churn-alerts@example.com"
    assert sorted(delivery.recipients) == ["de-oncall@example.com", "de@example.com", "ops@example.com"]
    message = delivery.message
    assert message["To"] == "de@example.com, de-oncall@example.com" and message["Cc"] == "ops@example.com"
    assert (
        message["Subject"]
        == alert.subject()
        == ("[churn] validate failed (try 1) in churn_pipeline manual__2026-11-29T02:00:00+00:00")
    )
    text = html.unescape(message.get_body(("html",)).get_content())
    assert "Phase: Data Validation" in text and "To (Responsible, Accountable): data_engineer" in text
    assert "Informed: devops_engineer, product_manager" in text
    assert "validate failed with ContractViolation, which a retry cannot fix: tenure: 'twelve'" in text
    assert f"Log: {alert.log_url}" in text
    assert len(read_alerts(settings.state_dir / ALERTS_FILE)) == 1


def test_an_unreachable_webhook_or_missing_connection_leaves_the_alert_recorded(settings, monkeypatch, caplog):
    from churn.airflow_alerts import _record_and_send

    closed = free_port()
    monkeypatch.setenv(
        "AIRFLOW_CONN_DOWN_HOOK", json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{closed}"})
    )
    routes = {
        "data_engineer": AlertRoute(email=("de@example.com",), webhook_conn_id="down_hook"),
        "devops_engineer": AlertRoute(email=("ops@example.com",), webhook_conn_id="never_defined_hook"),
    }
    settings = routed(settings, routes)

    _record_and_send(validate_failure(), settings, {})

    assert len(read_alerts(settings.state_dir / ALERTS_FILE)) == 1
    log = caplog.text
    assert "could not send the alert as the webhook of Connection 'down_hook'" in log
    assert "could not send the alert as the webhook of Connection 'never_defined_hook'" in log
    assert "no SMTP Connection 'smtp_default' is defined: the alert is not sent there" in log


def test_alerts_use_the_warehouse_connection_and_survive_a_broken_one(churn_home, monkeypatch, caplog):
    from churn.airflow_alerts import settings_for_alerts

    monkeypatch.setenv("AIRFLOW_CONN_CHURN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": "/srv/w.db"}))
    settings, readable = settings_for_alerts()
    assert readable and settings.warehouse_url == "sqlite:////srv/w.db"

    monkeypatch.setenv("AIRFLOW_CONN_CHURN_WAREHOUSE", json.dumps({"conn_type": "sqlite"}))
    settings, readable = settings_for_alerts()
    assert not readable
    assert "cannot read the warehouse Connection" in caplog.text and "the Host field is empty" in caplog.text


def test_owner_links_open_each_roles_page_or_mail():
    from churn.airflow_alerts import owner_links

    links = owner_links()
    assert links["data_engineer"] == "mailto:data-engineers@example.com"
    assert set(links) >= {"data_engineer", "data_scientist", "ml_engineer", "mlops_engineer"}
