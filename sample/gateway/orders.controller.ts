import { Body, Controller, Get, Logger, Param, ParseUUIDPipe, Post, Req } from '@nestjs/common';
import { TraceService } from 'otel-nest';
import type { Order } from '../shared/contracts.js';
import type { AuthenticatedRequest } from './api-key.guard.js';
import { CreateOrderDto } from './create-order.dto.js';
import { OrdersClient } from './orders.client.js';

@Controller('orders')
export class OrdersController {
  private readonly logger = new Logger('OrdersController');

  constructor(
    private readonly orders: OrdersClient,
    private readonly trace: TraceService,
  ) {}

  @Post()
  place(@Body() order: CreateOrderDto, @Req() { principal }: AuthenticatedRequest): Promise<Order> {
    this.logger.log(`order for ${order.quantity} × ${order.sku} from ${principal.userId}`);
    // From here on, every span in every service this request reaches carries the tenant and the user.
    return this.trace.withTenant(principal.tenantId, () =>
      this.trace.withUser(principal.userId, () => this.orders.place(order, principal)),
    );
  }

  @Get(':id')
  get(@Param('id', ParseUUIDPipe) id: string, @Req() { principal }: AuthenticatedRequest): Promise<Order> {
    return this.trace.withTenant(principal.tenantId, () => this.orders.get(id));
  }
}
