import { Module, type MiddlewareConsumer, type NestModule } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ClientsModule } from '@nestjs/microservices';
import { ThrottlerGuard, ThrottlerModule } from '@nestjs/throttler';
import { OtelClientGrpc, OtelModule } from 'otel-nest';
import { config } from '../shared/config.js';
import { BAGGAGE_TO_ATTRIBUTES, ORDERS_CLIENT, OrdersGrpc } from '../shared/contracts.js';
import { ApiKeyGuard } from './api-key.guard.js';
import { HealthController } from './health.controller.js';
import { OrdersClient } from './orders.client.js';
import { OrdersController } from './orders.controller.js';
import { TraceIdMiddleware } from './trace-id.middleware.js';

@Module({
  imports: [
    // Exporter and batching come from the OTEL_* environment variables. The rule sampler's default
    // rules drop the /health probes (and what they call goes out unsampled); every other request
    // follows OTEL_TRACES_SAMPLER, else parent-based always-on.
    OtelModule.forRoot({
      serviceName: 'gateway',
      baggageToAttributes: BAGGAGE_TO_ATTRIBUTES,
      sampler: { rules: [] },
    }),
    ThrottlerModule.forRoot([{ ttl: 10_000, limit: 20 }]),
    ClientsModule.register([
      {
        name: ORDERS_CLIENT,
        customClass: OtelClientGrpc,
        options: { package: OrdersGrpc.package, protoPath: OrdersGrpc.protoPath, url: config.orders.url },
      },
    ]),
  ],
  controllers: [OrdersController, HealthController],
  providers: [
    OrdersClient,
    // Guards run in this order: rate limit first, then the API key.
    { provide: APP_GUARD, useClass: ThrottlerGuard },
    { provide: APP_GUARD, useClass: ApiKeyGuard },
  ],
})
export class GatewayModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(TraceIdMiddleware).forRoutes('*path');
  }
}
