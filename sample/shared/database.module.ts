import { Global, Inject, Module, type OnApplicationShutdown } from '@nestjs/common';
import pg from 'pg';
import { config } from './config.js';

/** A PostgreSQL connection pool (node-postgres), injectable as `Pool`. Its queries are traced by instrumentation-pg. */
@Global()
@Module({
  providers: [{ provide: pg.Pool, useFactory: () => new pg.Pool({ ...config.postgres, max: 5 }) }],
  exports: [pg.Pool],
})
export class DatabaseModule implements OnApplicationShutdown {
  constructor(@Inject(pg.Pool) private readonly pool: pg.Pool) {}

  onApplicationShutdown(): Promise<void> {
    return this.pool.end();
  }
}
