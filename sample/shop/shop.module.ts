import { Module, type MiddlewareConsumer, type NestModule } from '@nestjs/common';
import { InventoryClient } from './inventory.client.js';
import { InventoryController } from './inventory.controller.js';
import { OrdersController } from './orders.controller.js';
import { OrdersService } from './orders.service.js';
import { TraceIdMiddleware } from './trace-id.middleware.js';

/** Orders and inventory. TraceService comes from the global OtelModule. */
@Module({
  controllers: [OrdersController, InventoryController],
  providers: [OrdersService, InventoryClient],
})
export class ShopModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(TraceIdMiddleware).forRoutes(OrdersController, InventoryController);
  }
}
