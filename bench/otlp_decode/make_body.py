"""Writes body.pb and body.json: the hand-written HikariCP export of tests/fixtures/otlp
beside 300 HTTP server histograms of 6 points each (16 buckets, 6 attributes), about what
a Java service's agent sends every interval, encoded by opentelemetry-proto."""

import json
import sys

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

fixture, out = sys.argv[1], sys.argv[2]
request = json.load(open(fixture))
attrs = lambda i, j: [
    {"key": "http.route", "value": {"stringValue": f"/api/v1/things/{i}/{j}"}},
    {"key": "http.request.method", "value": {"stringValue": "GET"}},
    {"key": "http.response.status_code", "value": {"intValue": "200"}},
    {"key": "url.scheme", "value": {"stringValue": "https"}},
    {"key": "server.address", "value": {"stringValue": "checkout.shop.svc"}},
    {"key": "network.protocol.version", "value": {"stringValue": "1.1"}},
]
histograms = [
    {
        "name": f"http.server.request.duration.{i}",
        "unit": "s",
        "histogram": {
            "aggregationTemporality": 2,
            "dataPoints": [
                {
                    "attributes": attrs(i, j),
                    "startTimeUnixNano": "1767225600000000000",
                    "timeUnixNano": "1767225660000000000",
                    "count": "1000",
                    "sum": 12.5,
                    "bucketCounts": [str(k) for k in range(16)],
                    "explicitBounds": [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 15],
                }
                for j in range(6)
            ],
        },
    }
    for i in range(300)
]
request["resourceMetrics"][0]["scopeMetrics"].append(
    {"scope": {"name": "io.opentelemetry.http"}, "metrics": histograms}
)
message = json_format.Parse(json.dumps(request), ExportMetricsServiceRequest())
open(f"{out}/body.pb", "wb").write(message.SerializeToString())
open(f"{out}/body.json", "w").write(json_format.MessageToJson(message, indent=None))
