import pytest

from churn.raci import load_raci, parse_raci, render_matrix


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


def _document(**overrides):
    entry = {
        "task_id": "ingest",
        "phase": "Data Collection",
        "responsible": "data_engineer",
        "accountable": "data_engineer",
        "consulted": [],
        "informed": [],
        "hands_off": "raw files",
    }
    return {"phases": [{**entry, **overrides}]}


def test_unknown_role_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="chief_data_wizard"):
        parse_raci(_document(responsible="chief_data_wizard"))


def test_repeated_phase_is_rejected():
    document = _document()
    document["phases"].append(document["phases"][0])
    with pytest.raises(ValueError, match="repeats"):
        parse_raci(document)


def test_rendered_matrix_has_a_row_per_phase():
    rendered = render_matrix(load_raci())
    assert rendered.count("\n| `") == 7
    assert "| `score` | Deployment | mlops_engineer | mlops_engineer |" in rendered
