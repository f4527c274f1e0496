import { Module } from '@nestjs/common';
import { OtelModule } from 'otel-nest';
import { BAGGAGE_TO_ATTRIBUTES } from '../shared/contracts.js';
import { DatabaseModule } from '../shared/database.module.js';
import { InventoryController } from './inventory.controller.js';
import { RedisModule } from './redis.module.js';
import { StockService } from './stock.service.js';

@Module({
  imports: [
    OtelModule.forRoot({ serviceName: 'inventory', baggageToAttributes: BAGGAGE_TO_ATTRIBUTES }),
    DatabaseModule,
    RedisModule,
  ],
  controllers: [InventoryController],
  providers: [StockService],
})
export class InventoryModule {}
