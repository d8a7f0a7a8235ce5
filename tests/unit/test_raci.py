import pytest
import yaml

from churn.documents import ConfigurationError
from churn.raci import load_matrix, load_raci, parse_matrix, parse_raci, render_codeowners, render_matrix
from churn.settings import PROJECT_DIR
from scripts import raci as raci_command

BUNDLED = (PROJECT_DIR / "include" / "churn" / "raci.yaml").read_text()


def test_bundled_matrix_lists_the_seven_phases_in_lifecycle_order():
    assert list(load_raci()) == [
        "ingest",
        "validate",
        "feature",
        "train",
        "evaluate",
        "package",
        "score",
        "monitor",
    ]


def test_matrix_rows_match_the_agreed_raci():
    row = load_raci()["feature"]
    assert (row.phase, row.responsible, row.accountable) == (
        "Feature Engineering",
        "data_scientist",
        "ml_engineer",
    )
    assert row.consulted == ("data_engineer",)
    assert row.informed == ("mlops_engineer", "devops_engineer", "product_manager")


def test_the_ingest_handoff_describes_landing_files_unchanged():
    hands_off = load_raci()["ingest"].hands_off
    assert "byte for byte" in hands_off and "sha256" in hands_off


def _document(**overrides) -> str:
    entry = {
        "task_id": "ingest",
        "phase": "Data Collection",
        "responsible": "data_engineer",
        "accountable": "data_engineer",
        "consulted": [],
        "informed": [],
        "hands_off": "raw files",
    }
    return yaml.safe_dump(
        {
            "roles": {"data_engineer": {"handle": "@churn/data-engineers"}, "data_scientist": {"handle": "@jane"}},
            "default_owner": "data_engineer",
            "phases": [{**entry, **overrides}],
        }
    )


def test_the_roles_are_the_files_own_list():
    assert (
        parse_raci(_document(accountable="data_scientist"), "raci.yaml")["ingest"].accountable == "data_scientist"
    )


def test_unknown_role_is_rejected_with_its_name():
    with pytest.raises(
        ConfigurationError, match=r"raci\.yaml: .*'ingest' names roles not listed.*chief_data_wizard"
    ):
        parse_raci(_document(responsible="chief_data_wizard"), "raci.yaml")


def test_repeated_phase_is_rejected():
    document = yaml.safe_load(_document())
    document["phases"].append(document["phases"][0])
    with pytest.raises(ConfigurationError, match="repeats"):
        parse_raci(yaml.safe_dump(document), "raci.yaml")


@pytest.mark.parametrize(
    ("typo", "named"),
    [
        (
            ("    responsible: mlops_engineer", "    resposible: mlops_engineer"),
            "unknown key 'phases.6.resposible'",
        ),
        (
            ("    hands_off: >-\n      The training", "    handoff: >-\n      The training"),
            "unknown key 'phases.0.handoff'",
        ),
        (("roles:", "role:"), "unknown key 'role'"),
    ],
)
def test_a_typo_in_raci_yaml_is_refused_naming_the_file_and_key(typo, named):
    text = BUNDLED.replace(*typo, 1)
    assert text != BUNDLED
    with pytest.raises(ConfigurationError) as caught:
        parse_raci(text, "/srv/raci.yaml")
    assert str(caught.value).startswith("/srv/raci.yaml: ") and named in str(caught.value)


def test_rendered_matrix_has_a_row_per_phase():
    rendered = render_matrix()
    assert rendered.count("\n| `") == 9  # the eight pipeline tasks, and Incident Response's check
    assert "| `monitor` | Monitoring Setup | mlops_engineer | mlops_engineer |" in rendered
    assert "| `score` | Deployment | mlops_engineer | mlops_engineer |" in rendered
    assert "| a drift-started run of churn_pipeline | Retraining | ml_engineer | mlops_engineer |" in rendered
    matrix = load_matrix()
    audit = matrix.phases[0].model_copy(update={"task_id": None, "phase": "Audit"})
    assert "| no task yet | Audit |" in render_matrix(matrix.model_copy(update={"phases": (audit,)}))


def test_phases_without_a_task_are_in_the_matrix_but_not_the_dag():
    matrix = load_matrix()
    later = {row.phase: row for row in matrix.phases if row.task_id is None}
    assert [(row.responsible, row.accountable) for row in later.values()] == [
        ("mlops_engineer", "product_manager"),
        ("ml_engineer", "mlops_engineer"),
    ]
    assert list(later) == ["Incident Response", "Retraining"]
    assert all(row.module is None for row in later.values())
    assert list(matrix.tasks()) == list(load_raci())


def _owning(**roles) -> str:
    """The bundled raci.yaml with ``roles`` (role: list of paths it owns) replacing its roles' lists."""
    document = yaml.safe_load(BUNDLED)
    for role, paths in roles.items():
        document["roles"].setdefault(role, {"handle": "@churn/newcomers"})["owns"] = paths
    return yaml.safe_dump(document, sort_keys=False)


def test_a_phase_module_belongs_to_its_responsible_role_without_being_listed():
    owned = load_matrix().owned_paths()
    assert "include/churn/ingest.py" in owned["data_engineer"]
    assert "include/churn/score.py" in owned["mlops_engineer"]
    document = yaml.safe_load(BUNDLED)
    document["phases"][2]["responsible"] = "ml_engineer"
    moved = parse_matrix(yaml.safe_dump(document), "raci.yaml").owned_paths()
    assert "include/churn/feature.py" in moved["ml_engineer"]
    assert "include/churn/feature.py" not in moved["data_scientist"]


def test_every_path_is_listed_once_and_every_role_has_a_handle():
    owned = [path for paths in load_matrix().owned_paths().values() for path in paths]
    assert len(owned) == len(set(owned))
    assert all(role.handle.startswith("@churn/") for role in load_matrix().roles.values())


@pytest.mark.parametrize(
    ("document", "named"),
    [
        (
            _owning(data_scientist=["include/churn/ingest.py"]),
            r"'include/churn/ingest.py' is owned twice: by "
            r"'data_engineer' \(Responsible for Data Collection\) and by 'data_scientist'",
        ),
        (
            _owning(ml_engineer=["include/churn/sources.py"]),
            r"'include/churn/sources.py' is owned twice: by "
            r"'data_engineer' and by 'ml_engineer'",
        ),
        (
            BUNDLED.replace("default_owner: mlops_engineer", "default_owner: platform_team"),
            r"default_owner names a role not listed under 'roles': 'platform_team'",
        ),
        (
            BUNDLED.replace('handle: "@churn/ml-engineers"', "handle: ml-engineers"),
            r"roles.ml_engineer.handle: a handle",
        ),
        (_owning(devops_engineer=["/Dockerfile"]), r"'/Dockerfile' is not a plain path"),
        (_owning(devops_engineer=["include/../Dockerfile"]), r"'include/../Dockerfile' is not a plain path"),
        (_owning(devops_engineer=["*.yaml"]), r"'\*.yaml' is not a plain path"),
    ],
    ids=[
        "phase-module-claimed",
        "path-in-two-roles",
        "unknown-default-owner",
        "bad-handle",
        "absolute",
        "dotdot",
        "wildcard",
    ],
)
def test_ownership_mistakes_are_refused_naming_the_path_and_roles(document, named):
    with pytest.raises(ConfigurationError, match=named):
        parse_matrix(document, "raci.yaml")


def test_a_phase_without_a_task_naming_an_unknown_role_is_refused_naming_it():
    document = yaml.safe_load(BUNDLED)
    document["phases"][-1]["responsible"] = "site_reliability_engineer"
    with pytest.raises(
        ConfigurationError, match=r"'Retraining' names roles not listed.*site_reliability_engineer"
    ):
        parse_matrix(yaml.safe_dump(document), "raci.yaml")


def test_a_misspelt_ownership_key_is_refused_naming_it():
    document = yaml.safe_load(BUNDLED)
    document["roles"]["mlops_engineer"]["own"] = document["roles"]["mlops_engineer"].pop("owns")
    with pytest.raises(ConfigurationError, match=r"unknown key 'roles.mlops_engineer.own'"):
        parse_matrix(yaml.safe_dump(document), "raci.yaml")


def test_codeowners_is_generated_with_a_header_the_default_owner_first_and_anchored_paths():
    text = render_codeowners(load_matrix(), PROJECT_DIR)
    assert text.startswith("# Generated by `make raci` from include/churn/raci.yaml: do not edit by hand.\n")
    rules = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    assert rules[0] == ["*", "@churn/mlops-engineers"]
    assert ["/include/churn/ingest.py", "@churn/data-engineers"] in rules
    assert ["/include/churn/contracts/", "@churn/data-engineers"] in rules
    assert all(pattern.startswith("/") for pattern, _ in rules[1:])


def test_codeowners_puts_a_folder_before_the_paths_inside_it_so_the_inner_owner_wins(tmp_path):
    # CODEOWNERS: the last matching line wins.
    (tmp_path / "include" / "churn").mkdir(parents=True)
    (tmp_path / "include" / "churn" / "ingest.py").touch()
    document = yaml.safe_load(_document())
    document["roles"]["data_scientist"]["owns"] = ["include/"]
    text = render_codeowners(parse_matrix(yaml.safe_dump(document), "raci.yaml"), tmp_path)
    rules = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    assert rules == [
        ["*", "@churn/data-engineers"],
        ["/include/", "@jane"],
        ["/include/churn/ingest.py", "@churn/data-engineers"],
    ]


def test_a_path_missing_from_the_repository_is_refused_naming_it_and_its_role(tmp_path):
    (tmp_path / "include" / "churn").mkdir(parents=True)
    (tmp_path / "include" / "churn" / "ingest.py").touch()
    document = yaml.safe_load(_document())
    document["roles"]["data_scientist"]["owns"] = ["notebooks/", "include/churn/ingest.py/"]
    matrix = parse_matrix(yaml.safe_dump(document), "raci.yaml")
    with pytest.raises(
        ConfigurationError,
        match=r"not in .*: include/churn/ingest.py/ \(data_scientist\), notebooks/ \(data_scientist\)",
    ):
        render_codeowners(matrix, tmp_path)
    (tmp_path / "notebooks").mkdir()
    with pytest.raises(ConfigurationError, match=r"include/churn/ingest.py/ \(data_scientist\)$"):
        render_codeowners(matrix, tmp_path)


def test_the_dags_tasks_are_read_from_its_phase_task_calls_in_order():
    source = '@phase_task("ingest")\ndef a(): ...\n@phase_task("score", "plan", trigger_rule=x)\ndef b(): ...\n'
    assert raci_command.dag_task_phases(source, load_matrix()) == {
        "ingest": "Data Collection",
        "score.plan": "Deployment",
    }


def test_a_task_owned_by_a_matrix_rows_responsible_role_is_read_with_that_rows_phase():
    source = (
        "ROW = incident_response()\nOTHER = something_else()\n"
        '@task(owner=ROW.responsible, task_id="checked")\ndef check(): ...\n'
        "@task(owner=ROW.responsible)\ndef named_by_its_function(): ...\n"
        "@task(owner=OTHER.responsible)\ndef not_a_row(): ...\n"
        '@task(owner="someone")\ndef owned_by_name(): ...\n'
    )
    assert raci_command.dag_task_phases(source, load_matrix()) == {
        "checked": "Incident Response",
        "named_by_its_function": "Incident Response",
    }


def test_make_raci_lists_the_tasks_of_every_dag_per_role():
    sources = {dag_id: path.read_text() for dag_id, path in raci_command.DAG_FILES.items()}
    assert set(sources) == {"churn_pipeline", "churn_scores_due"}
    report = raci_command.render_report(load_matrix(), sources)
    assert "monitor,\n                 churn_scores_due.check_scores_written\n" in report
    alone = raci_command.render_report(load_matrix(), {"churn_pipeline": sources["churn_pipeline"]})
    assert "check_scores_written" not in alone


def test_make_raci_prints_the_matrix_within_100_columns_then_tasks_and_paths_per_role():
    report = raci_command.render_report(
        load_matrix(), {dag_id: path.read_text() for dag_id, path in raci_command.DAG_FILES.items()}
    )
    assert max(len(line) for line in report.splitlines()) <= 100
    table = report.split("\n\n")[1].splitlines()
    assert table[0].split() == ["data", "data", "ml", "mlops", "devops", "product"]
    assert table[1].split() == [
        "phase",
        "task",
        "engineer",
        "scientist",
        "engineer",
        "engineer",
        "engineer",
        "manager",
    ]
    assert table[2].split() == ["Data", "Collection", "ingest", "R", "A", "C", "I", "I", "I", "C"]
    assert table[-2].split() == ["Retraining", "-", "C", "C", "R", "A", "I", "I"]
    assert "\nmlops_engineer   score.plan, score.partition, score.publish, monitor,\n" in report
    assert "\ndevops_engineer  nothing\n" in report
    assert "\ndevops_engineer  .ci/, constraints.txt, pyproject.toml\n" in report


def test_check_mode_fails_on_a_stale_codeowners_and_passes_on_a_fresh_one(tmp_path, capsys):
    codeowners = tmp_path / "CODEOWNERS"
    assert raci_command.main(["--check", "--codeowners", str(codeowners)]) == 1
    codeowners.write_text(render_codeowners(load_matrix(), PROJECT_DIR).replace("@churn/ml-engineers", "@someone"))
    assert raci_command.main(["--check", "--codeowners", str(codeowners)]) == 1
    assert "run `make raci`" in capsys.readouterr().err
    assert raci_command.main(["--codeowners", str(codeowners)]) == 0
    assert raci_command.main(["--check", "--codeowners", str(codeowners)]) == 0
    assert codeowners.read_text() == render_codeowners(load_matrix(), PROJECT_DIR)
