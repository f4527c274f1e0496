// The table the pg route reads, in its own schema of the shared database (created once by the
// orchestrator before the app processes start; rerunning is harmless).
import pg from 'pg';

export const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export async function preparePg(url = PG_URL) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    await client.query(`
      CREATE SCHEMA IF NOT EXISTS otel_nest_bench;
      CREATE TABLE IF NOT EXISTS otel_nest_bench.products (
        id integer PRIMARY KEY, sku text NOT NULL, name text NOT NULL, price_cents integer NOT NULL, stock integer NOT NULL
      );
      INSERT INTO otel_nest_bench.products
        SELECT i, 'sku-' || i, 'Product ' || i, 100 + (i * 7919) % 10000, (i * 31) % 50 FROM generate_series(1, 100) AS i
        ON CONFLICT (id) DO NOTHING;
    `);
  } finally {
    await client.end();
  }
}
