import { BadGatewayException, Injectable } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { AddressInfo } from 'node:net';
import type { Stock } from './inventory.controller.js';

/**
 * Calls the inventory API with plain `fetch`. otel-nest traces it (a CLIENT span) and sends the
 * context (`traceparent`, `baggage`) with it; nothing here knows about tracing.
 */
@Injectable()
export class InventoryClient {
  constructor(private readonly adapterHost: HttpAdapterHost) {}

  async getStock(sku: string): Promise<Stock> {
    const response = await fetch(`${this.baseUrl()}/inventory/${encodeURIComponent(sku)}`);
    if (!response.ok) {
      throw new BadGatewayException(`The inventory answered ${response.status} for ${sku}.`);
    }
    return (await response.json()) as Stock;
  }

  // INVENTORY_URL points at a separate inventory service; by default this app serves the API itself.
  private baseUrl(): string {
    if (process.env.INVENTORY_URL) {
      return process.env.INVENTORY_URL.replace(/\/$/, '');
    }
    const address = this.adapterHost.httpAdapter.getHttpServer().address() as AddressInfo;
    return `http://127.0.0.1:${address.port}`;
  }
}
