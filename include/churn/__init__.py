"""Batch customer-churn pipeline: one module per ML lifecycle phase, no Airflow imports.

Importing this package is cheap on purpose: the DAG file imports it at parse time, so
heavy libraries (pandas, scikit-learn, MLflow, Great Expectations) are imported only by
the phase modules that need them.
"""

import os

# Great Expectations would otherwise try to send usage statistics, and there is no network.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

__version__ = "0.1.0"
