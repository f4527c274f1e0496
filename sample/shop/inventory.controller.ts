import { Controller, Get, NotFoundException, Param } from '@nestjs/common';

export interface Stock {
  sku: string;
  available: number;
}

const STOCK = new Map<string, number>([
  ['sku-1', 12],
  ['sku-2', 3],
]);

/** The inventory API. The shop calls it over HTTP, as it would call a separate inventory service. */
@Controller('inventory')
export class InventoryController {
  @Get(':sku')
  getStock(@Param('sku') sku: string): Stock {
    if (sku === 'sku-broken') {
      // An unexpected failure: answered 500, recorded on this request's span with its type.
      throw new Error('The warehouse database is offline.');
    }
    const available = STOCK.get(sku);
    if (available === undefined) {
      throw new NotFoundException(`No stock record for ${sku}.`);
    }
    return { sku, available };
  }
}
