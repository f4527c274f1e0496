import { Injectable, NotFoundException } from '@nestjs/common';
import { TraceService, Traced } from 'otel-nest';
import { InventoryClient } from './inventory.client.js';

export interface Order {
  id: string;
  sku: string;
  quantity: number;
  inStock: boolean;
  tenant: string | null;
}

const ORDERS = new Map<string, { sku: string; quantity: number }>([
  ['order-1', { sku: 'sku-1', quantity: 2 }],
  ['order-2', { sku: 'sku-2', quantity: 5 }],
  ['order-3', { sku: 'sku-broken', quantity: 1 }],
]);

@Injectable()
export class OrdersService {
  constructor(
    private readonly inventory: InventoryClient,
    private readonly traceService: TraceService,
  ) {}

  /** Span `OrdersService.getOrder`, a child of the request's span; the inventory call nests under it. */
  @Traced()
  async getOrder(id: string): Promise<Order> {
    const order = ORDERS.get(id);
    if (order === undefined) {
      // A 4xx HttpException is an expected outcome: the span keeps status UNSET.
      throw new NotFoundException(`Order ${id} does not exist.`);
    }
    this.traceService.setAttribute('order.id', id);
    const stock = await this.inventory.getStock(order.sku);
    this.traceService.addEvent('inventory.checked', { 'inventory.sku': stock.sku, 'inventory.available': stock.available });
    return {
      id,
      ...order,
      inStock: stock.available >= order.quantity,
      tenant: this.traceService.getTenantId() ?? null,
    };
  }
}
