// A Node.js application with a pg.Pool that pushes the pool's counts to poolwatch as a
// canonical JSON snapshot, with Node's built-in fetch (Node 18+).
//
//   POOLWATCH_URL=http://127.0.0.1:19188 DATABASE_URL=postgres://... node push.js
//
// Environment: POOLWATCH_URL, DATABASE_URL, APP (default "web"), POD_NAME (the instance),
// HOLD (clients kept checked out), PUSHES (0: for ever), EVERY (seconds).
const { Pool } = require("pg");

const app = process.env.APP || "web";
const pool = new Pool({
  connectionString: process.env.DATABASE_URL || "postgres://postgres@127.0.0.1/postgres",
  max: 10,
  application_name: app,
});
const url = `${process.env.POOLWATCH_URL || "http://127.0.0.1:19188"}/api/v1/pools/${app}/main` +
  `?instance=${encodeURIComponent(process.env.POD_NAME || "pod-1")}`;

async function push() {
  // totalCount: open clients; idleCount: idle in the pool; waitingCount: queued callers.
  const body = {
    max_open: pool.options.max,
    open: pool.totalCount,
    in_use: pool.totalCount - pool.idleCount,
    idle: pool.idleCount,
    waiting: pool.waitingCount,
  };
  const res = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`push rejected: ${res.status} ${await res.text()}`);
  console.log("pushed", JSON.stringify(body));
}

async function main() {
  const held = [];
  for (let i = 0; i < Number(process.env.HOLD || 0); i++) held.push(await pool.connect());
  const pushes = Number(process.env.PUSHES || 0);
  for (let n = 1; pushes === 0 || n <= pushes; n++) {
    await push();
    if (pushes === 0 || n < pushes) await new Promise((r) => setTimeout(r, 1000 * Number(process.env.EVERY || 10)));
  }
  held.forEach((c) => c.release());
  await pool.end();
}

main().catch((e) => { console.error(e); process.exit(1); });
