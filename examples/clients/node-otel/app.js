// A Node.js application with a pg.Pool, instrumented with OpenTelemetry's pg
// instrumentation, exporting its metrics over OTLP/HTTP straight to poolwatch. Nothing
// poolwatch-specific is in it but the endpoint: the instrumentation reports the pool as
// db.client.connection.count{db.client.connection.state="used"|"idle",
// db.client.connection.pool.name="host:port/database"}, plus .max and .pending_requests.
//
//   OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://127.0.0.1:19188/v1/metrics \
//   OTEL_SERVICE_NAME=web DATABASE_URL=postgres://... node app.js
//
// Standard OpenTelemetry environment: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES (e.g.
// service.instance.id=$POD_NAME), OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
// OTEL_EXPORTER_OTLP_COMPRESSION (gzip). Its own: DATABASE_URL; OTLP_ENCODING (protobuf,
// the default, or json); EXPORT_MS (export interval, default 10000); WORKERS (queries
// run at once, each connection returned after its query, default 1); HOLD (connections
// checked out after a query and never returned: a leak, default 0); SECONDS (how long to
// run; 0: for ever).
const { metrics } = require("@opentelemetry/api");
const { MeterProvider, PeriodicExportingMetricReader } = require("@opentelemetry/sdk-metrics");
const { defaultResource, detectResources, envDetector } = require("@opentelemetry/resources");
const { registerInstrumentations } = require("@opentelemetry/instrumentation");
const { PgInstrumentation } = require("@opentelemetry/instrumentation-pg");

const { OTLPMetricExporter } =
  process.env.OTLP_ENCODING === "json"
    ? require("@opentelemetry/exporter-metrics-otlp-http")
    : require("@opentelemetry/exporter-metrics-otlp-proto");

const provider = new MeterProvider({
  resource: defaultResource().merge(detectResources({ detectors: [envDetector] })),
  readers: [
    new PeriodicExportingMetricReader({
      exporter: new OTLPMetricExporter(),
      exportIntervalMillis: Number(process.env.EXPORT_MS || 10000),
    }),
  ],
});
metrics.setGlobalMeterProvider(provider);
// The instrumentation patches pg when it is loaded: register it first.
registerInstrumentations({ instrumentations: [new PgInstrumentation()], meterProvider: provider });
const { Pool } = require("pg");

const service = process.env.OTEL_SERVICE_NAME || "web";
const url = new URL(process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres");
// Host, port and database given apart (not as a connection string): the instrumentation
// names the pool from them.
const pool = new Pool({
  host: url.hostname,
  port: Number(url.port || 5432),
  database: url.pathname.slice(1) || "postgres",
  user: decodeURIComponent(url.username || "postgres"),
  password: decodeURIComponent(url.password) || undefined,
  max: 10,
  // The service name as application_name: poolwatch matches the server's sessions to it.
  application_name: service,
});

async function main() {
  const held = [];
  for (let i = 0; i < Number(process.env.HOLD || 0); i++) {
    const client = await pool.connect();
    await client.query("SELECT 1");
    held.push(client);
  }
  console.log(`holding ${held.length}`);
  const seconds = Number(process.env.SECONDS || 0);
  const started = Date.now();
  const worker = async () => {
    while (seconds === 0 || Date.now() - started < seconds * 1000) {
      await pool.query("SELECT pg_sleep(0.1)");
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await Promise.all(Array.from({ length: Number(process.env.WORKERS || 1) }, worker));
  held.forEach((c) => c.release());
  await provider.shutdown();
  await pool.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
