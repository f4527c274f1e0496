import { Body, Controller, Get, NotFoundException, Param, Post } from '@nestjs/common';
import type { Order, PlaceOrder } from '../shared/contracts.js';
import { OrdersRepository } from './orders.repository.js';
import { OrdersService } from './orders.service.js';

/** Internal API, called by the gateway (which validated the input and the caller). */
@Controller('orders')
export class OrdersController {
  constructor(
    private readonly service: OrdersService,
    private readonly repository: OrdersRepository,
  ) {}

  @Post()
  place(@Body() request: Omit<PlaceOrder, 'orderId'>): Promise<Order> {
    return this.service.place(request);
  }

  @Get(':id')
  async get(@Param('id') id: string): Promise<Order> {
    const order = await this.repository.find(id);
    if (order === undefined) {
      throw new NotFoundException(`Order ${id} does not exist.`);
    }
    return order;
  }
}
