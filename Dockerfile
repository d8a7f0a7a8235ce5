# The project's image: the official Airflow image (which carries the Celery, Postgres and
# FAB providers) plus the pipeline's pinned dependencies and its package.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root requirements.txt pyproject.toml /opt/airflow/project/
RUN pip install --no-cache-dir -r /opt/airflow/project/requirements.txt

COPY --chown=airflow:root include /opt/airflow/project/include
RUN pip install --no-cache-dir --no-deps /opt/airflow/project

COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins

USER root
RUN mkdir -p /opt/airflow/churn /mlflow/artifacts && chown -R 50000:0 /opt/airflow/churn /mlflow
USER airflow

ENV CHURN_HOME=/opt/airflow/churn \
    GX_ANALYTICS_ENABLED=false
