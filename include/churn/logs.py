"""What the pipeline's task logs show: its own account of each phase, not its libraries' chatter.

Great Expectations logs at INFO while it is imported and while it builds a data context:
one "Skipping registering function … because it is a closure" line per decorated
function (hundreds), "Multiple declarations of metric …", and the whole fluent datasource
configuration ("Loading 'datasources' ->"). Airflow shows a task's INFO lines, so every
task that imports it would bury its own few lines under them. :func:`quiet_libraries` sets
those loggers to WARNING (their warnings and errors still show), before any phase module
imports Great Expectations; ``churn/__init__.py`` calls it, so importing any ``churn``
module is enough. Only the standard library is imported here: the DAG file imports the
package at parse time.
"""

from __future__ import annotations

import logging

# The loggers whose INFO lines are noise in a task log, and what they say.
QUIETED_LOGGERS = (
    "great_expectations._docs_decorators",  # "Skipping registering function … because it is a closure"
    "great_expectations.expectations.registry",  # "Multiple declarations of metric …"
    "great_expectations.datasource.fluent.config",  # "Loading 'datasources' -> <the whole config>"
)


def quiet_libraries() -> None:
    """Show only warnings and errors from the loggers in :data:`QUIETED_LOGGERS`."""
    for name in QUIETED_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
