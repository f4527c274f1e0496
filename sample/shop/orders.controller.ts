import { Controller, Get, Headers, Param } from '@nestjs/common';
import { TraceService } from 'otel-nest';
import { OrdersService, type Order } from './orders.service.js';

@Controller('orders')
export class OrdersController {
  constructor(
    private readonly orders: OrdersService,
    private readonly traceService: TraceService,
  ) {}

  @Get(':id')
  getOrder(@Param('id') id: string, @Headers('x-tenant-id') tenantId?: string): Promise<Order> {
    // A caller that sent `baggage: tenant.id=...` already set the tenant. One that names it in a
    // header of ours gets it added to the baggage here, so every span and call below carries it.
    if (tenantId && this.traceService.getTenantId() === undefined) {
      return this.traceService.withTenant(tenantId, () => this.orders.getOrder(id));
    }
    return this.orders.getOrder(id);
  }
}
