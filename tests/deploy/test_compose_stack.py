"""The team stack's files, checked where no Docker engine runs: docker-compose.yaml against
the Compose Specification's JSON schema, its services and wiring, and its secrets."""

from __future__ import annotations

import copy
import json
import os
import re
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import PROJECT_DIR

COMPOSE_SCHEMA = Path(sys.prefix) / "share" / "compose-spec" / "compose_spec.json"
VARIABLE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Z0-9_]+)(?P<modifier>[:?\-][^}]*)?\}")
AIRFLOW_COMPONENTS = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"]


@pytest.fixture(scope="module")
def compose_text() -> str:
    return (PROJECT_DIR / "docker-compose.yaml").read_text()


@pytest.fixture(scope="module")
def compose(compose_text) -> dict:
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    pairs = [
        line.split("=", 1)
        for line in (PROJECT_DIR / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return {key: value for key, value in pairs}


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.Draft202012Validator:
    if not COMPOSE_SCHEMA.is_file():
        message = f"Compose schema missing at {COMPOSE_SCHEMA}; `make install` fetches it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    draft = schema.get("$schema")
    assert draft == "https://json-schema.org/draft/2020-12/schema", (
        f"{COMPOSE_SCHEMA} is {draft}; run `make install`"
    )
    return jsonschema.Draft202012Validator(schema)


def test_compose_file_follows_the_compose_specification(compose, compose_validator):
    compose_validator.validate(compose)


def test_the_schema_check_catches_a_misspelt_key(compose, compose_validator):
    broken = copy.deepcopy(compose)
    broken["services"]["airflow-worker"]["healthcheck"]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        compose_validator.validate(broken)


def test_the_whole_team_stack_is_declared(compose):
    services = compose["services"]
    for name in [
        *AIRFLOW_COMPONENTS,
        "airflow-worker",
        "airflow-init",
        "airflow-db",
        "redis",
        "mlflow",
        "mlflow-db",
        "warehouse",
    ]:
        assert name in services, name
    assert services["airflow-worker"]["deploy"]["replicas"] >= 2
    assert services["airflow-scheduler"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert "redis://" in services["airflow-worker"]["environment"]["AIRFLOW__CELERY__BROKER_URL"]


def test_airflow_services_use_the_project_image_and_share_the_run_folders(compose):
    for name in [*AIRFLOW_COMPONENTS, "airflow-worker", "airflow-init", "mlflow"]:
        service = compose["services"][name]
        assert service["image"] == "churn-pipeline-airflow:latest" and service["build"] == ".", name
    for name in ["airflow-worker", "airflow-scheduler"]:
        assert "churn-state:/opt/airflow/churn" in compose["services"][name]["volumes"]


def test_long_running_services_have_health_checks_and_start_in_order(compose):
    services = compose["services"]
    for name, service in services.items():
        if name != "airflow-init":
            assert "test" in service.get("healthcheck", {}), name
    for name in AIRFLOW_COMPONENTS:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["airflow-db"]["condition"] == "service_healthy"
    assert services["mlflow"]["depends_on"]["mlflow-db"]["condition"] == "service_healthy"
    assert services["airflow-worker"]["depends_on"]["warehouse"]["condition"] == "service_healthy"


def test_pipeline_connections_point_at_the_stack(compose):
    environment = compose["services"]["airflow-worker"]["environment"]
    assert environment["AIRFLOW_CONN_CHURN_WAREHOUSE"].startswith("postgresql://churn:${WAREHOUSE_PASSWORD")
    assert environment["AIRFLOW_CONN_CHURN_WAREHOUSE"].endswith("@warehouse:5432/churn")
    assert environment["AIRFLOW_CONN_CHURN_MLFLOW"] == "http://mlflow:5000"


def test_every_variable_is_documented_in_env_example_and_required(compose_text, env_example):
    referenced = {match["name"] for match in VARIABLE.finditer(compose_text)}
    assert referenced, "the compose file should read its secrets from .env"
    assert referenced <= set(env_example), referenced - set(env_example)
    for name in referenced:
        uses = [m["modifier"] or "" for m in VARIABLE.finditer(compose_text) if m["name"] == name]
        assert any(use.startswith(":?") for use in uses), f"{name} is never required with :?"


def test_no_secret_is_written_into_the_compose_file(compose):
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        for key, value in environment.items():
            if re.search(r"PASSWORD|SECRET|FERNET", key):
                assert "${" in str(value), f"{name}.{key} must come from .env"


def test_env_example_holds_placeholders_only(env_example):
    for key, value in env_example.items():
        if re.search(r"PASSWORD|SECRET|FERNET", key):
            assert value == "change-me", key


def test_real_env_file_is_never_committed():
    ignored = (PROJECT_DIR / ".gitignore").read_text().splitlines()
    assert ".env" in ignored


def pyproject_pins(group: str = "runtime") -> dict[str, str]:
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] if group == "runtime" else project["optional-dependencies"][group]
    pins = [re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==(\S+)", r) for r in requirements]
    return {pin[1].lower().replace("_", "-"): pin[2] for pin in pins if pin}


def test_image_builds_on_the_airflow_version_the_project_pins():
    dockerfile = (PROJECT_DIR / "Dockerfile").read_text()
    pinned = pyproject_pins()["apache-airflow"]
    assert re.search(rf"^FROM apache/airflow:{re.escape(pinned)}-python3\.11$", dockerfile, re.M)
    assert "constraints.txt" in dockerfile
    assert "[dev]" not in dockerfile, "the image carries the runtime dependencies only"


def test_the_lock_holds_every_version_pyproject_pins():
    locked = {}
    for line in (PROJECT_DIR / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            locked[name.lower().replace("_", "-")] = version
    for name, version in {**pyproject_pins(), **pyproject_pins("dev")}.items():
        assert locked.get(name) == version, f"{name}=={version} in pyproject.toml, {locked.get(name)} in the lock"


def test_astro_settings_declare_the_pipeline_connections_with_placeholders():
    settings = yaml.safe_load((PROJECT_DIR / "airflow_settings.yaml").read_text())["airflow"]
    connections = {c["conn_id"]: c for c in settings["connections"]}
    assert set(connections) == {"churn_warehouse", "churn_mlflow"}
    assert connections["churn_warehouse"]["conn_password"] == "change-me"
