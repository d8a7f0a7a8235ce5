# The project's image: the official Airflow image (which carries the Celery, Postgres and
# FAB providers) plus the pipeline's runtime dependencies and its package. Only the runtime
# dependencies of pyproject.toml are installed (not the dev extra), each at the version the
# project's lock, constraints.txt, pins.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root pyproject.toml constraints.txt /opt/airflow/project/
# The dependencies in a layer of their own, so that a code change does not reinstall them.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/opt/airflow/project/pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/runtime-requirements.txt \
 && pip install --no-cache-dir -c /opt/airflow/project/constraints.txt -r /tmp/runtime-requirements.txt \
 && rm /tmp/runtime-requirements.txt

COPY --chown=airflow:root include /opt/airflow/project/include
RUN pip install --no-cache-dir -c /opt/airflow/project/constraints.txt /opt/airflow/project

COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins

USER root
RUN mkdir -p /opt/airflow/churn /mlflow/artifacts && chown -R 50000:0 /opt/airflow/churn /mlflow
USER airflow

ENV CHURN_HOME=/opt/airflow/churn \
    GX_ANALYTICS_ENABLED=false
