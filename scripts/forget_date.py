"""``make forget-date DATE=YYYY-MM-DD``: remove a mistaken score date's scores and its hold on
promotion.

Runs for a date before one already scored or promoted for never promote
(:func:`churn.evaluate.why_held_back`), so one run for a mistyped date (2999-12-31) freezes
promotion for every real date. That hold comes from two records, and both are undone here:
the date's rows in the warehouse (``churn_scores``, whose latest date counts, and with them
``churn_monitoring``'s, in one transaction) and the champion's tag in the MLflow registry
saying which date it was promoted for. Run folders and Airflow's runs are kept: they are the
record of what happened, and the rule reads neither. Running it again changes nothing more.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from churn.evaluate import champion_and_record, promotion_frozen_before
from churn.settings import Settings
from churn.tracking import FORGOTTEN_PROMOTION_TAG, PROMOTED_FOR_TAG, forget_promotions_for, promoted_for
from churn.warehouse import forget_date, monitoring_table, open_scores_table


def promotion_hold(score_date: date, settings: Settings) -> date | None:
    """The date before which runs cannot promote: the latest scored or promoted for."""
    champion, record = champion_and_record(score_date, settings)
    return promotion_frozen_before(promoted_for(champion), record)


def hold_in_words(frozen_before: date | None) -> str:
    if frozen_before is None:
        return "nothing holds promotion back (no date is scored or promoted for)"
    return f"runs for dates before {frozen_before} (the latest date scored or promoted for) never promote"


def forget(score_date: date, settings: Settings) -> str:
    """Remove ``score_date``'s scores and monitoring rows and the registry's record of a
    promotion for it; returns what was removed and what it changes for promotion, in words."""
    before = promotion_hold(score_date, settings)
    with open_scores_table(settings) as (engine, scores):
        monitoring = monitoring_table(
            sa.MetaData(), settings.config.monitoring.table, settings.config.warehouse.schema_name
        )
        removed = forget_date(engine, scores, monitoring, score_date)
    model = settings.config.registered_model
    versions = forget_promotions_for(model, score_date)
    after = promotion_hold(score_date, settings)
    lines = [f"forget-date {score_date}:"]
    lines += [f"  {table}: removed {rows:,} rows of {score_date}" for table, rows in removed.items()]
    lines.append(
        f"  {model}: version(s) {', '.join(versions)} no longer recorded as promoted for {score_date} "
        f"(tag {PROMOTED_FOR_TAG} removed; {FORGOTTEN_PROMOTION_TAG}={score_date} keeps the record)"
        if versions
        else f"  {model}: no version was recorded as promoted for {score_date}"
    )
    lines.append(f"Promotion before: {hold_in_words(before)}.")
    lines.append(f"Promotion now: {hold_in_words(after)}.")
    lines.append(
        f"A run for {score_date} now counts as the date's first run: it trains, and may promote, like a new "
        f"date. Run folders (score_date={score_date}) and Airflow's runs are kept as the record of what happened."
    )
    return "\n".join(lines)


def main() -> int:
    """Remove one score date's rows from the warehouse and its hold on promotion."""
    import argparse

    from churn.airflow_connections import task_settings

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--score-date", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
    score_date = parser.parse_args().score_date
    print(forget(score_date, task_settings(warehouse=True, mlflow=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
