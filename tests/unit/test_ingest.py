import hashlib
from datetime import UTC, date, datetime
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import sqlalchemy as sa

from churn.handoffs import IngestResult, LandedSnapshot, PhaseFailure
from churn.ingest import land_snapshot, read_table_batches, resolve_score_date
from churn.locations import location
from churn.manifest import read_manifests
from churn.run_parameters import RunParameterError, RunParameters, read_run_parameters, trigger_form
from churn.settings import PROJECT_DIR
from churn.sources import SOURCE_FORMS, FileSource, SourceError, TableSource, parse_source
from churn.storage import read_parquet, read_snapshot_chunks, write_parquet_batches_atomically
from tests.conftest import SCORE_DATE, ingest_for, run_parameters


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("/data/train.csv", FileSource(Path("/data/train.csv"), "csv")),
        ("file:///data/train.parquet", FileSource(Path("/data/train.parquet"), "parquet")),
        ("data/train.CSV", FileSource(PROJECT_DIR / "data/train.CSV", "csv")),
        ("sql://crm/customers", TableSource("crm", None, "customers")),
        ("sql://crm/analytics.customers", TableSource("crm", "analytics", "customers")),
    ],
)
def test_source_references_are_understood(spec, expected):
    assert parse_source(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("s3://bucket/train.csv", "unknown scheme"),
        ("/data/train.xlsx", "must end in .csv, .parquet, .pq"),
        ("sql://crm/1customers", "not a valid SQL identifier"),
        # An empty schema name must not silently read the table from the default schema (see the report).
        ("sql://crm/.customers", "not a valid SQL identifier"),
    ],
)
def test_bad_source_references_say_what_is_wrong(spec, message):
    with pytest.raises(SourceError, match=message):
        parse_source(spec)


def test_a_score_date_placeholder_reads_each_dates_own_snapshot():
    source = parse_source("/data/{score_date}/training.csv", date(2026, 11, 20))
    assert source == FileSource(Path("/data/2026-11-20/training.csv"), "csv")
    with pytest.raises(SourceError, match="needs a score date"):
        parse_source("/data/{score_date}/training.csv")


def _parsed(spec: str) -> bool:
    try:
        parse_source(spec, SCORE_DATE)
    except SourceError:
        return False
    return True


def _accepted(spec: str) -> dict[str, bool]:
    """Whether ``spec`` passes the trigger form's schema (as Airflow checks it, with JSON Schema)
    and the run parameters ingest reads."""
    form = trigger_form()["training_source"]
    try:
        jsonschema.validate(spec, {key: value for key, value in form.items() if key != "default"})
        by_form = True
    except jsonschema.ValidationError:
        by_form = False
    try:
        read_run_parameters(run_parameters(spec, "/d/scoring.csv"))
        by_run_parameters = True
    except RunParameterError:
        by_run_parameters = False
    return {"form": by_form, "run_parameters": by_run_parameters}


@pytest.mark.parametrize(
    "spec",
    [
        "/d/a.csv",
        "/d/a.CSV",
        "/d/a.Csv",
        "/d/a.PARQUET",
        "/d/a.PQ",
        "/d/a.pq",
        "file:///d/a.parquet",
        "sql://crm/customers",
        "sql://crm/a.b",
        "/d/a.xlsx",
        "ftp://x/a.csv",
        "/d/a.csv.gz",
        " /d/a.csv ",
        "data/a.csv",
        "/d/{score_date}/a.csv",
        "s3://bucket/a.csv",
        "sql://crm/a-b",
        "",
        # Edge cases: names that are not SQL identifiers, a file named only by its suffix, a
        # colon in a path, an empty schema name.
        "sql://crm/1customers",
        "sql://crm/a.b.c",
        "/d/.csv",
        "/d/a:b.csv",
        "sql://crm/.customers",
    ],
)
def test_ingest_accepts_exactly_the_sources_parse_source_understands(spec):
    # The form leaves every string to ingest: Airflow would refuse a schema pattern with the raw
    # regular expression in its message, and ingest refuses in words, at once.
    assert _accepted(spec) == {"form": True, "run_parameters": _parsed(spec)}, spec


def test_a_file_is_landed_byte_for_byte_with_its_checksum(source_files, tmp_path: Path):
    original = source_files["training"]
    landed = land_snapshot(parse_source(str(original)), tmp_path / "raw", "training")
    assert isinstance(landed, LandedSnapshot)
    assert landed.path == location(tmp_path / "raw" / "training.csv") and landed.format == "csv"
    assert landed.path.read_bytes() == original.read_bytes()
    assert landed.sha256 == hashlib.sha256(original.read_bytes()).hexdigest()
    assert landed.bytes == original.stat().st_size
    assert landed.source == str(original)


def test_csv_is_read_as_the_text_it_holds(source_files):
    frame = pd.concat(read_snapshot_chunks(source_files["training"], "csv", 1000))
    assert len(frame) == 3000
    assert all(pd.api.types.is_string_dtype(dtype) for dtype in frame.dtypes)
    assert " " in set(frame["TotalCharges"])  # the public file's blank, kept for validation to judge


def test_missing_file_stops_ingest_with_its_path_and_lands_nothing(tmp_path: Path):
    with pytest.raises(SourceError, match=r"not found: .*absent\.csv"):
        land_snapshot(parse_source(str(tmp_path / "absent.csv")), tmp_path / "raw", "training")
    assert not (tmp_path / "raw").exists()


def test_a_missing_source_fails_run_ingest_and_is_recorded(settings, source_files, tmp_path: Path):
    params = run_parameters(tmp_path / "absent.csv", source_files["scoring"])
    with pytest.raises(SourceError, match=r"not found: .*absent\.csv"):
        ingest_for(settings, params)
    run_dir = settings.run_dir(SCORE_DATE.isoformat(), f"manual__{SCORE_DATE.isoformat()}T02:00:00+00:00")
    failed = read_manifests(run_dir)["failed"]
    assert isinstance(failed, PhaseFailure)
    assert (failed.phase, failed.error_type) == ("ingest", "SourceError") and "absent.csv" in failed.error
    assert "ingest" not in read_manifests(run_dir)


def test_garbage_parquet_is_reported_as_unreadable(tmp_path: Path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(SourceError, match=r"not a readable Parquet file"):
        next(read_snapshot_chunks(path, "parquet", 1000))


def test_sql_table_source_is_landed_as_parquet(tmp_path: Path, snapshots, monkeypatch: pytest.MonkeyPatch):
    db_path = tmp_path / "crm.db"
    url = f"sqlite:///{db_path}"
    engine = sa.create_engine(url)
    snapshots.scoring.to_sql("active_customers", engine, index=False)
    engine.dispose()
    # The database comes from the Airflow Connection the reference names: here, crm.
    monkeypatch.setenv("AIRFLOW_CONN_CRM", f"sqlite:///{db_path}")
    landed = land_snapshot(parse_source("sql://crm/active_customers"), tmp_path / "raw", "scoring")
    assert landed.format == "parquet" and landed.source == "table active_customers via connection crm"
    assert landed.path == location(tmp_path / "raw" / "scoring.parquet")
    assert sum(len(chunk) for chunk in read_snapshot_chunks(landed.path, "parquet", 1000)) == 600
    with pytest.raises(SourceError, match="table not found"):
        land_snapshot(parse_source("sql://crm/nobody"), tmp_path / "raw", "nobody")
    with pytest.raises(SourceError, match="table not found"):
        next(read_table_batches(parse_source("sql://crm/nobody"), url, 100))


def test_a_table_is_exported_in_batches_of_one_schema(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    # A column blank in the whole first batch, text later: every batch must keep its type.
    frame = pd.DataFrame(
        {
            "customerID": [f"c-{i}" for i in range(25)],
            "note": [None] * 10 + [f"note {i}" for i in range(15)],
            "tenure": list(range(25)),
            "charges": [float(i) / 3 for i in range(25)],
        }
    )
    frame.to_sql("customers", engine, index=False)
    empty = frame.head(0)
    empty.to_sql("nobody_yet", engine, index=False, dtype={"note": sa.String(), "customerID": sa.String()})
    engine.dispose()
    batches = list(read_table_batches(parse_source("sql://crm/customers"), url, 10))
    assert [batch.num_rows for batch in batches] == [10, 10, 5]
    assert len({batch.schema for batch in batches}) == 1
    landed = write_parquet_batches_atomically(batches, tmp_path / "training.parquet")
    pd.testing.assert_frame_equal(read_parquet(landed), frame, check_dtype=False)
    assert [batch.num_rows for batch in read_table_batches(parse_source("sql://crm/nobody_yet"), url, 10)] == [0]


def test_a_table_source_without_its_connection_names_the_connection(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_ELSEWHERE", raising=False)
    with pytest.raises(SourceError, match="no Airflow Connection 'elsewhere' is defined"):
        land_snapshot(parse_source("sql://elsewhere/customers"), tmp_path / "raw", "scoring")
    assert not (tmp_path / "raw").exists()


def test_score_date_prefers_the_trigger_then_the_logical_date():
    run_after = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    assert resolve_score_date(date(2026, 11, 1), None, run_after) == date(2026, 11, 1)
    assert resolve_score_date(date(2026, 11, 1), datetime(2026, 11, 28, 2, tzinfo=UTC), run_after) == date(
        2026, 11, 1
    )
    assert resolve_score_date(None, datetime(2026, 11, 28, 2, tzinfo=UTC), run_after) == date(2026, 11, 28)
    assert resolve_score_date(None, None, run_after) == date(2026, 11, 29)


def test_run_parameters_are_read_as_typed_values():
    parameters = read_run_parameters(run_parameters("/d/training.csv", "sql://crm/customers"))
    assert parameters == RunParameters(
        training_source="/d/training.csv",
        scoring_source="sql://crm/customers",
        contract="telco_churn",
        score_date=SCORE_DATE,
    )
    without_date = {**run_parameters("/d/t.csv", "/d/s.csv"), "score_date": None}
    assert read_run_parameters(without_date).score_date is None


def test_a_score_date_that_is_not_a_date_is_refused_by_name(settings):
    params = {**run_parameters("/d/training.csv", "/d/scoring.csv"), "score_date": "29/11/2026"}
    with pytest.raises(RunParameterError, match=r"score_date: not a date in YYYY-MM-DD form \(got '29/11/2026'\)"):
        read_run_parameters(params)
    with pytest.raises(RunParameterError, match="score_date"):
        ingest_for(settings, params)
    assert not settings.runs_dir.exists()  # refused before any run folder is made


def test_an_unknown_run_parameter_is_refused_by_name():
    params = run_parameters("/d/training.csv", "/d/scoring.csv")
    params["scoring_sourc"] = params.pop("scoring_source")
    with pytest.raises(RunParameterError, match="unknown key 'scoring_sourc'"):
        read_run_parameters(params)


def test_a_source_in_no_accepted_form_is_refused_by_name_in_words():
    params = {**run_parameters("/d/training.csv", "/d/scoring.csv"), "training_source": "/d/training.xlsx"}
    with pytest.raises(
        RunParameterError, match=r"training_source: .*training\.xlsx'?: a file must end in \.csv, \.parquet, \.pq"
    ):
        read_run_parameters(params)
    params["training_source"] = "ftp://x/a.csv"
    with pytest.raises(RunParameterError) as caught:
        read_run_parameters(params)
    assert f"unknown scheme; a source is {SOURCE_FORMS}" in str(caught.value)
    assert "sql://<connection id>/<[schema.]table>" in SOURCE_FORMS
    assert "pattern" not in str(caught.value) and "[cC]" not in str(caught.value)


def test_a_date_that_does_not_exist_is_refused_as_such():
    params = {**run_parameters("/d/training.csv", "/d/scoring.csv"), "score_date": "2026-02-30"}
    with pytest.raises(RunParameterError, match=r"score_date: no such date \(YYYY-MM-DD\) \(got '2026-02-30'\)"):
        read_run_parameters(params)


def test_run_ingest_lands_both_snapshots_and_records_them(trained_run):
    landed = trained_run.landed
    assert isinstance(landed, IngestResult)
    assert landed.training.format == landed.scoring.format == "csv"
    assert len(landed.scoring.sha256) == 64
    assert landed.training.path == landed.run.run_dir / "raw" / "training.csv"
    assert landed.scoring.path.is_file()
    assert landed.run.score_date == SCORE_DATE and landed.run.contract == "telco_churn"
    assert read_manifests(landed.run.run_dir)["ingest"] == landed


def refused_at_ingest(settings, training: str, scoring: str) -> tuple[SourceError, Path]:
    """The refusal ``run_ingest`` raises for these sources, and the run's folder."""
    with pytest.raises(SourceError) as refused:
        ingest_for(settings, run_parameters(training, scoring))
    return refused.value, settings.run_dir(
        SCORE_DATE.isoformat(), f"manual__{SCORE_DATE.isoformat()}T02:00:00+00:00"
    )


def assert_nothing_landed(run_dir) -> None:
    assert not (run_dir / "raw").exists()
    assert read_manifests(run_dir)["failed"].phase == "ingest" and "ingest" not in read_manifests(run_dir)


@pytest.fixture
def confined(churn_home, monkeypatch):
    """Settings whose file sources may come from CHURN_HOME/sources only (the tests' default
    also allows the temporary folders)."""
    from churn.settings import load_settings

    monkeypatch.delenv("CHURN_SOURCE_ROOTS")
    return load_settings()


@pytest.fixture
def secret_file(tmp_path: Path, confined) -> Path:
    """A CSV outside every folder sources may come from, with a column nobody should learn of."""
    secret = tmp_path / "secret" / "customers.csv"
    secret.parent.mkdir()
    secret.write_text("customerID,social_security_number\nc-1,078-05-1120\n")
    assert confined.source_roots == (confined.sources_dir,)
    assert not secret.is_relative_to(confined.sources_dir)
    return secret


def test_a_file_outside_the_source_folders_is_refused_by_its_real_path(confined, secret_file):
    confined.sources_dir.mkdir(parents=True)
    through_dots = confined.sources_dir / ".." / ".." / "secret" / "customers.csv"
    assert through_dots.resolve() == secret_file
    (confined.sources_dir / "training.csv").symlink_to(secret_file)  # a link that leaves the folder
    for training in (secret_file, through_dots, confined.sources_dir / "training.csv"):
        error, run_dir = refused_at_ingest(confined, str(training), str(secret_file))
        assert str(error) == (
            f"source {training} (really {secret_file}): files are read only from {confined.sources_dir}; put "
            "the file there, or add its folder to the environment's CHURN_SOURCE_ROOTS (folders separated by ':')"
        )
        assert "social_security_number" not in str(error)
        assert_nothing_landed(run_dir)
    # A relative path is relative to the project folder, wherever it leads.
    error, _ = refused_at_ingest(confined, "../../secret/customers.csv", str(secret_file))
    assert f"(really {(PROJECT_DIR / '../../secret/customers.csv').resolve()}): files are read only" in str(error)


def test_the_environment_adds_folders_sources_may_come_from(tmp_path: Path, secret_file):
    from churn.settings import load_settings

    home = tmp_path / "home"
    allowed = load_settings(
        {"CHURN_HOME": str(home), "CHURN_SOURCE_ROOTS": f"{tmp_path / 'other'}:{secret_file.parent}"}
    )
    assert allowed.source_roots == (home / "sources", tmp_path / "other", secret_file.parent)
    # Allowed, the file lands (and validation, not ingest, judges it).
    assert (
        ingest_for(allowed, run_parameters(secret_file, secret_file)).training.bytes == secret_file.stat().st_size
    )


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        (
            "sql://churn_warehouse/churn_scores",
            "the warehouse's Connection is never a source, or the pipeline's scores would come back as its "
            "input; read through one of the Connections in pipeline.yaml's sources.connections (churn_source)",
        ),
        (
            "sql://crm/customers",
            "tables are read only through the Connections in pipeline.yaml's sources.connections "
            "(churn_source); add 'crm' there to allow it",
        ),
    ],
)
def test_a_table_through_a_connection_not_configured_for_sources_is_refused_unread(
    settings, source, rule, monkeypatch, tmp_path: Path
):
    # Defined and readable: the refusal is the rule's, before the database is asked anything.
    database = tmp_path / "warehouse.db"
    pd.DataFrame({"customerID": ["c-1"], "churn_probability": [0.5]}).to_sql(
        source.rsplit("/", 1)[1], sa.create_engine(f"sqlite:///{database}"), index=False
    )
    for conn_id in ("CHURN_WAREHOUSE", "CRM"):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id}", f"sqlite:///{database}")
    error, run_dir = refused_at_ingest(settings, source, source)
    described = parse_source(source).describe()
    assert str(error) == f"source {described}: {rule}"
    assert "churn_probability" not in str(error)
    assert_nothing_landed(run_dir)


def test_a_score_date_outside_the_window_is_refused_before_any_run_folder(settings, source_files):
    params = run_parameters(source_files["training"], source_files["scoring"], date(2999, 12, 31))
    with pytest.raises(RunParameterError) as refused:
        ingest_for(settings, params)
    assert "score_date 2999-12-31 is outside the window of score dates, 2025-10-25 to 2026-12-06" in str(
        refused.value
    )
    assert "allow_any_score_date" in str(refused.value)
    assert not settings.runs_dir.exists()


def test_allow_any_score_date_lands_the_run_and_records_the_override(settings, source_files, caplog):
    params = run_parameters(source_files["training"], source_files["scoring"], date(2999, 12, 31))
    with caplog.at_level("WARNING", logger="churn"):
        landed = ingest_for(settings, params | {"allow_any_score_date": True})
    assert landed.run.score_date == date(2999, 12, 31) and landed.run.allow_any_score_date
    assert read_manifests(landed.run.run_dir)["ingest"].run.allow_any_score_date
    assert "2999-12-31 is outside the window" in caplog.text and "allow_any_score_date" in caplog.text


def test_the_window_is_around_the_day_the_run_was_queued_for_not_the_workers_clock(settings, source_files):
    from churn.ingest import run_ingest

    queued = datetime(2020, 3, 1, 2, tzinfo=UTC)
    params = run_parameters(source_files["training"], source_files["scoring"], date(2020, 2, 29))
    landed = run_ingest(
        params, airflow_run_id="backfill__2020-03-01", logical_date=None, run_after=queued, settings=settings
    )
    assert landed.run.score_date == date(2020, 2, 29)
    with pytest.raises(RunParameterError, match="2019-01-26 to 2020-03-08"):
        run_ingest(
            params | {"score_date": SCORE_DATE.isoformat()},
            airflow_run_id="backfill__2020-03-01",
            logical_date=None,
            run_after=queued,
            settings=settings,
        )
