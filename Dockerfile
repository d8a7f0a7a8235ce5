# The project's image: the official Airflow image plus the pipeline's pinned dependencies.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root requirements.txt pyproject.toml /opt/airflow/project/
RUN pip install --no-cache-dir -r /opt/airflow/project/requirements.txt

COPY --chown=airflow:root include /opt/airflow/project/include
RUN pip install --no-cache-dir --no-deps -e /opt/airflow/project

COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins

ENV CHURN_HOME=/opt/airflow/churn \
    GX_ANALYTICS_ENABLED=false \
    AIRFLOW__CORE__LOAD_EXAMPLES=False
