"""Batch customer-churn pipeline: one module per ML lifecycle phase. Only ``airflow_connections``
(Connections through Airflow's hooks), ``errors`` (failing a task without retries) and
``locations`` (run folders as Airflow's ObjectStoragePath) touch Airflow.

Importing this package is cheap on purpose: the DAG file imports it at parse time, so
heavy libraries (pandas, scikit-learn, MLflow, Great Expectations) are imported only by
the phase modules that need them.
"""

import os

# Great Expectations sends usage statistics unless this is set before it is first imported;
# set here, ahead of any phase module, so a run's validation never reports to a third party.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

# Great Expectations' import-time INFO lines (hundreds) would bury every task's own log;
# quieted here, before any phase module imports it (see churn.logs).
from churn.logs import quiet_libraries

quiet_libraries()

__version__ = "0.1.0"
