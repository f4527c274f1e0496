import { HttpException, Injectable } from '@nestjs/common';
import { config } from '../shared/config.js';
import type { Order } from '../shared/contracts.js';
import type { CreateOrderDto } from './create-order.dto.js';
import type { Principal } from './api-key.guard.js';

/**
 * The orders service's HTTP API. Plain `fetch`: otel-nest traces it (a CLIENT span) and sends
 * `traceparent` and `baggage` with every call.
 */
@Injectable()
export class OrdersClient {
  place(order: CreateOrderDto, principal: Principal): Promise<Order> {
    return this.call('POST', '/orders', { ...order, ...principal });
  }

  get(id: string): Promise<Order> {
    return this.call('GET', `/orders/${encodeURIComponent(id)}`);
  }

  private async call(method: string, path: string, body?: unknown): Promise<Order> {
    const response = await fetch(`${config.orders.url}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const payload = (await response.json()) as Order & Record<string, unknown>;
    if (!response.ok) {
      // The orders service's answer (402 declined, 409 out of stock, 404) goes back to the caller as is.
      throw new HttpException(payload, response.status);
    }
    return payload;
  }
}
