import pytest
import yaml

from churn.documents import ConfigurationError
from churn.raci import load_raci, parse_raci, render_matrix
from churn.settings import PROJECT_DIR

BUNDLED = (PROJECT_DIR / "include" / "churn" / "raci.yaml").read_text()


def test_bundled_matrix_lists_the_seven_phases_in_lifecycle_order():
    assert list(load_raci()) == ["ingest", "validate", "feature", "train", "evaluate", "package", "score"]


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
    return yaml.safe_dump({"roles": ["data_engineer", "data_scientist"], "phases": [{**entry, **overrides}]})


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
    rendered = render_matrix(load_raci())
    assert rendered.count("\n| `") == 7
    assert "| `score` | Deployment | mlops_engineer | mlops_engineer |" in rendered
