import { Module, type OnApplicationShutdown } from '@nestjs/common';
import { Redis } from 'ioredis';
import { config } from '../shared/config.js';

/** An ioredis client, injectable as `Redis`. Its commands are traced by instrumentation-ioredis. */
@Module({
  providers: [{ provide: Redis, useFactory: () => new Redis(config.redis.url) }],
  exports: [Redis],
})
export class RedisModule implements OnApplicationShutdown {
  constructor(private readonly redis: Redis) {}

  async onApplicationShutdown(): Promise<void> {
    await this.redis.quit();
  }
}
