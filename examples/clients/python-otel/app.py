"""A Python application with a SQLAlchemy engine on psycopg, instrumented with
OpenTelemetry's SQLAlchemy instrumentation, exporting its metrics over OTLP/HTTP straight
to poolwatch. Nothing poolwatch-specific is in it but the endpoint: the instrumentation
reports the pool as db.client.connections.usage{state="used"|"idle", pool.name}.

    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://127.0.0.1:19188/v1/metrics \
    OTEL_SERVICE_NAME=reports DATABASE_URL=postgresql://... python3 app.py

Standard OpenTelemetry environment: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES (e.g.
service.instance.id=$POD_NAME), OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
OTEL_EXPORTER_OTLP_COMPRESSION (gzip), OTEL_METRIC_EXPORT_INTERVAL (milliseconds).
Its own: DATABASE_URL; WORK, what the application does:
  healthy  runs short queries, each connection returned to the pool (the default);
  leak     checks a connection out every EVERY seconds (default 1), runs a query,
           commits, and never returns it: LEAK connections in all (default 4);
SECONDS (how long to run; 0: for ever).
The connections carry the service name as application_name, so poolwatch's view of the
pool and the server's view of its connections match without configuration.
"""

import os
import time

from opentelemetry import metrics
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from sqlalchemy import create_engine, text

service = os.environ.get("OTEL_SERVICE_NAME", "reports")
url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres")
url = url.replace("postgres://", "postgresql+psycopg://", 1).replace(
    "postgresql://", "postgresql+psycopg://", 1
)

provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
metrics.set_meter_provider(provider)

engine = create_engine(
    url,
    pool_size=5,
    max_overflow=5,
    pool_logging_name="main",
    connect_args={"application_name": service},
)
SQLAlchemyInstrumentor().instrument(engine=engine, meter_provider=provider)

work = os.environ.get("WORK", "healthy")
every = float(os.environ.get("EVERY", "1"))
leak = int(os.environ.get("LEAK", "4"))
seconds = float(os.environ.get("SECONDS", "0"))
started = time.monotonic()
leaked = []  # checked out and forgotten: kept referenced so they are never returned

while seconds == 0 or time.monotonic() - started < seconds:
    if work == "leak":
        if len(leaked) < leak:
            conn = engine.connect()
            conn.execute(text("SELECT count(*) FROM pg_class"))
            conn.commit()
            leaked.append(conn)
            print(f"leaked {len(leaked)}", flush=True)
        time.sleep(every)
    else:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_sleep(0.02)"))
        time.sleep(0.05)

provider.shutdown()
