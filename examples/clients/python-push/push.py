"""A Python application with a psycopg_pool connection pool that pushes the pool's
statistics with prometheus_client's stock push_to_gateway, pointed at poolwatch instead
of a Pushgateway. The gauges use the OpenTelemetry database-client names, which poolwatch
maps onto its pool model (docs/push.md).

    POOLWATCH=127.0.0.1:19188 DATABASE_URL=postgresql://... python3 push.py

Environment: POOLWATCH (host:port, default 127.0.0.1:19188), DATABASE_URL, JOB (the app,
default "reports"), POD_NAME (the instance, default "pod-1"), HOLD (connections kept
checked out), PUSHES (0: for ever), EVERY (seconds between pushes).
"""

import os
import time

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway
from psycopg_pool import ConnectionPool

app = os.environ.get("JOB", "reports")
pool = ConnectionPool(
    os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres"),
    min_size=1,
    max_size=10,
    kwargs={"application_name": app},
    open=True,
)
pool.wait()
held = [pool.getconn() for _ in range(int(os.environ.get("HOLD", "0")))]

registry = CollectorRegistry()
count = Gauge("db_client_connection_count", "Connections by state.", ["pool_name", "state"], registry=registry)
limit = Gauge("db_client_connection_max", "Most connections the pool may open.", ["pool_name"], registry=registry)
pending = Gauge("db_client_connection_pending_requests", "Callers waiting for a connection.", ["pool_name"], registry=registry)

pushes = int(os.environ.get("PUSHES", "0"))
n = 0
while pushes == 0 or n < pushes:
    n += 1
    stats = pool.get_stats()
    size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
    count.labels("main", "used").set(size - available)
    count.labels("main", "idle").set(available)
    limit.labels("main").set(stats.get("pool_max", pool.max_size))
    pending.labels("main").set(stats.get("requests_waiting", 0))
    push_to_gateway(
        os.environ.get("POOLWATCH", "127.0.0.1:19188"),
        job=app,
        registry=registry,
        grouping_key={"instance": os.environ.get("POD_NAME", "pod-1")},
    )
    print(f"pushed {n}: size={size} available={available}", flush=True)
    if pushes == 0 or n < pushes:
        time.sleep(float(os.environ.get("EVERY", "10")))

for conn in held:
    pool.putconn(conn)
pool.close()
