"""`make demo`'s progress lines fit a terminal: files by their last part, cut after a whole clause."""

from __future__ import annotations

from scripts.run_demo import WIDTH, shortened_line

PREFIX = "  ingest          data_engineer    4.1 s  "


def test_a_short_line_is_kept_whole_but_for_its_files():
    line = f"{PREFIX}5,000 rows in churn_scores at sqlite:////home/me/.churn/warehouse.db; report file:///a/b/report.html"
    assert shortened_line(line) == f"{PREFIX}5,000 rows in churn_scores at warehouse.db; report report.html"


def test_a_long_line_is_cut_after_its_last_whole_clause_that_fits():
    line = f"{PREFIX}test ROC AUC 0.818 (no champion to compare); decision: promote (no champion yet; " + "x " * 40
    assert shortened_line(line) == f"{PREFIX}test ROC AUC 0.818 (no champion to compare); decision: promote…"


def test_a_cut_never_leaves_a_parenthesis_open_or_a_word_half_written():
    staged = f"{PREFIX}staged 5,000 rows scored by churn-classifier version 1"
    assert shortened_line(f"{staged} (low 3,052, medium 1,286, high 662)" + " and more" * 5) == f"{staged}…"
    words = f"{PREFIX}logistic_regression chosen by CV ROC AUC 0.833 among 4 families" + " and then words" * 5
    shortened = shortened_line(words)
    assert len(shortened) <= WIDTH and words.startswith(shortened[:-1] + " ")
