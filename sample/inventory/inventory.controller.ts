import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { Patterns, type Reservation } from '../shared/contracts.js';
import { StockService } from './stock.service.js';

@Controller()
export class InventoryController {
  constructor(private readonly stock: StockService) {}

  @MessagePattern(Patterns.reserve)
  reserve(@Payload() request: Omit<Reservation, 'amountCents'>): Promise<Reservation> {
    return this.stock.reserve(request);
  }

  @MessagePattern(Patterns.release)
  release(@Payload() reservation: Reservation): Promise<{ released: boolean }> {
    return this.stock.release(reservation.orderId);
  }
}
