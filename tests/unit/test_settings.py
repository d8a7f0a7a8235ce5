from pathlib import Path

import pytest

from churn.documents import ConfigurationError, parse_document
from churn.settings import (
    PROJECT_DIR,
    PipelineConfig,
    load_settings,
    pipeline_config,
    redact_text,
    redact_url,
    safe_path_part,
    validated_identifier,
)

BUNDLED = (PROJECT_DIR / "include" / "churn" / "pipeline.yaml").read_text()


def test_defaults_keep_all_state_under_churn_home(tmp_path: Path):
    settings = load_settings({"CHURN_HOME": str(tmp_path)})
    assert settings.warehouse_url == f"sqlite:///{tmp_path / 'warehouse.db'}"
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    run_dir = settings.run_dir("2026-11-29", "manual__2026-11-29T02:00:00+00:00")
    assert run_dir.protocol == "file" and Path(run_dir.path).is_relative_to(tmp_path.resolve())


def test_the_runs_base_may_be_object_storage_through_a_connection(tmp_path: Path):
    settings = load_settings(
        {"CHURN_HOME": str(tmp_path), "CHURN_RUNS_BASE": "s3://settings_runs@my-bucket/churn/runs"}
    )
    run_dir = settings.run_dir("2026-11-29", "manual__2026-11-29T02:00:00+00:00")
    assert (run_dir.protocol, run_dir.conn_id, run_dir.bucket) == ("s3", "settings_runs", "my-bucket")
    assert run_dir.key == "churn/runs/score_date=2026-11-29/run_id=manual__2026-11-29T02_00_00_00_00"


def test_environment_overrides_the_embedded_defaults(tmp_path: Path):
    settings = load_settings(
        {
            "CHURN_HOME": str(tmp_path),
            "CHURN_WAREHOUSE_URL": "postgresql+psycopg://warehouse/churn",
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        }
    )
    assert settings.warehouse_url == "postgresql+psycopg://warehouse/churn"
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"


def test_the_bundled_configuration_is_typed():
    config = pipeline_config()
    assert config.training.cv_folds == 5
    assert config.quality_gates.min_test_roc_auc == 0.70
    families = ["logistic_regression", "hist_gradient_boosting", "random_forest", "extra_trees"]
    assert list(config.training.candidates.configured()) == families
    assert list(config.training.search.spaces.configured()) == families
    assert config.warehouse.table == "churn_scores" and config.warehouse.schema_name is None


def test_another_configuration_file_is_read_from_churn_pipeline_config(tmp_path: Path):
    other = tmp_path / "pipeline.yaml"
    other.write_text(BUNDLED.replace("registered_model: churn-classifier", "registered_model: churn-eu"))
    settings = load_settings({"CHURN_HOME": str(tmp_path), "CHURN_PIPELINE_CONFIG": str(other)})
    assert settings.config.registered_model == "churn-eu"


@pytest.mark.parametrize(
    ("typo", "named"),
    [
        (("cv_folds:", "cv_fold:"), ["unknown key 'training.cv_fold'", "required key 'training.cv_folds'"]),
        (("  min_test_roc_auc: 0.70", "  min_test_auc: 0.70"), ["unknown key 'quality_gates.min_test_auc'"]),
        (
            ("      max_iter: 250", "      max_iters: 250"),
            ["training.candidates.hist_gradient_boosting.max_iters"],
        ),
        (
            ("    logistic_regression:\n      C: 1.0", "    xgboost:\n      C: 1.0"),
            ["unknown key 'training.candidates.xgboost'"],
        ),
        (
            ("        max_depth: [8", "        max_dept: [8"),
            ["unknown key 'training.search.spaces.random_forest.max_dept'"],
        ),
        (("time_budget_seconds: 45", "time_budget_seconds: -1"), ["training.search.time_budget_seconds", "-1"]),
        (("calibration: sigmoid", "calibration: platt"), ["training.calibration", "'platt'"]),
        (("test_fraction: 0.2", "test_fraction: 1.5"), ["split.test_fraction", "1.5"]),
        (("  table: churn_scores", "  table: churn scores"), ["warehouse.table", "not a valid SQL identifier"]),
        (("  medium: 0.6", "  medium: 0.2"), ["risk_bands", "must increase"]),
        (("  high: 1.0", "  high: 0.9"), ["risk_bands", "the last must be 1.0 or above"]),
        (("  lock_seconds: 60", "  lock_seconds: 0"), ["database_timeouts.lock_seconds", "greater than 0"]),
        (("  lock_seconds: 60", "  lock_second: 60"), ["unknown key 'database_timeouts.lock_second'"]),
        (
            ("  feature: 60", "  features: 60"),
            ["task_timeouts_minutes", "tasks the DAGs do not have: ['features']"],
        ),
        (("  train: 120", "  train: -5"), ["task_timeouts_minutes.train", "greater than 0"]),
        (
            ("connections: [churn_source]", "connections: [churn source]"),
            ["sources.connections", "'churn source'"],
        ),
    ],
)
def test_a_typo_in_the_configuration_is_refused_naming_the_file_and_key(typo, named):
    text = BUNDLED.replace(*typo)
    assert text != BUNDLED
    with pytest.raises(ConfigurationError) as caught:
        parse_document(PipelineConfig, text, "/etc/churn/pipeline.yaml")
    assert str(caught.value).startswith("/etc/churn/pipeline.yaml: ")
    for words in named:
        assert words in str(caught.value)


def test_a_missing_configuration_file_is_named(tmp_path: Path):
    with pytest.raises(ConfigurationError, match=r"absent\.yaml cannot be read"):
        load_settings({"CHURN_HOME": str(tmp_path), "CHURN_PIPELINE_CONFIG": str(tmp_path / "absent.yaml")})


def test_run_ids_become_safe_folder_names():
    assert safe_path_part("scheduled__2026-11-29T02:00:00+00:00") == "scheduled__2026-11-29T02_00_00_00_00"
    assert "/" not in safe_path_part("../../etc")


@pytest.mark.parametrize("name", ["churn_scores", "_x", "Scores2026"])
def test_plain_identifiers_are_accepted(name):
    assert validated_identifier(name) == name


@pytest.mark.parametrize("name", ["scores; drop table x", "a-b", "1scores", "", "x" * 64, 'sc"ores'])
def test_identifiers_that_could_inject_sql_are_refused(name):
    with pytest.raises(ValueError, match="not a valid SQL identifier"):
        validated_identifier(name)


def test_overrides_replace_only_given_values(tmp_path: Path):
    settings = load_settings({"CHURN_HOME": str(tmp_path)})
    changed = settings.overridden(warehouse_url="postgresql+psycopg://w/db", mlflow_tracking_uri=None)
    assert changed.warehouse_url == "postgresql+psycopg://w/db"
    assert changed.mlflow_tracking_uri == settings.mlflow_tracking_uri


def test_mlflow_credentials_stay_out_of_repr_and_the_environment_is_left_to_mlflow(tmp_path: Path):
    settings = load_settings({"CHURN_HOME": str(tmp_path), "MLFLOW_TRACKING_PASSWORD": "t0ps3cret"})
    assert settings.mlflow_password is None
    with_login = settings.overridden(mlflow_username="bob", mlflow_password="t0ps3cret")
    assert "t0ps3cret" not in repr(with_login)
    assert "bob" not in repr(with_login)


def test_redacted_url_keeps_extras_and_hides_passwords_also_in_the_query():
    url = "postgresql+psycopg://u:s3cr3t@h/db?sslmode=require&sslpassword=k3yp4ss"
    assert "s3cr3t" not in redact_url(url) and "k3yp4ss" not in redact_url(url)
    assert "sslmode=require" in redact_url(url)


def test_credentials_in_free_text_are_masked():
    text = "API request to https://bob:t0ken@mlflow:5000/api failed; db postgresql+psycopg://u:pw@h/db?sslpassword=k3y"
    assert (
        redact_text(text)
        == "API request to https://bob:***@mlflow:5000/api failed; db postgresql+psycopg://u:***@h/db?sslpassword=***"
    )


@pytest.mark.parametrize(
    ("hostile", "masked_alone"),
    [
        # A 1 MB cell quoted in a message once kept validate over 75 minutes in here.
        ("a" * 1_000_000, "a" * 1_000_000),
        ("x://u:" * 200_000, "x://u:" * 200_000),  # a login every few characters, no password's "@"
        ("-a" * 500_000, "-a" * 500_000),
        ("password=" * 100_000, "password=***"),
    ],
)
def test_masking_a_huge_or_pathological_message_keeps_it_and_still_masks(hostile, masked_alone):
    assert redact_text(hostile) == masked_alone
    masked = redact_text(f"{hostile} https://bob:t0ken@mlflow:5000/api {hostile}")
    assert masked == f"{masked_alone} https://bob:***@mlflow:5000/api {masked_alone}"


def test_a_password_running_over_further_logins_is_masked_whole():
    assert redact_text("a://u:x://v:p@h b://w:q") == "a://u:***@h b://w:q"
