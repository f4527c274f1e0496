import { Inject, Injectable, Logger } from '@nestjs/common';
import { RpcException } from '@nestjs/microservices';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { Reservation } from '../shared/contracts.js';

/** Reservations live in Redis until the order is confirmed (or for 15 minutes). */
const RESERVATION_TTL_SECONDS = 900;
const reservationKey = (orderId: string) => `reservation:${orderId}`;

@Injectable()
export class StockService {
  private readonly logger = new Logger('StockService');

  constructor(
    @Inject(pg.Pool) private readonly db: pg.Pool,
    private readonly redis: Redis,
  ) {}

  async reserve({ orderId, sku, quantity }: Omit<Reservation, 'amountCents'>): Promise<Reservation> {
    const { rows } = await this.db.query<{ price_cents: number }>(
      'UPDATE shop.stock SET available = available - $2 WHERE sku = $1 AND available >= $2 RETURNING price_cents',
      [sku, quantity],
    );
    if (rows.length === 0) {
      throw new RpcException({ code: 'out_of_stock', message: `Not enough ${sku} in stock for ${quantity}.` });
    }
    const reservation: Reservation = { orderId, sku, quantity, amountCents: rows[0]!.price_cents * quantity };
    await this.redis.set(reservationKey(orderId), JSON.stringify(reservation), 'EX', RESERVATION_TTL_SECONDS);
    this.logger.log(`reserved ${quantity} × ${sku} for order ${orderId}`);
    return reservation;
  }

  /** Idempotent: a reservation released (or expired) before is not released twice. */
  async release(orderId: string): Promise<{ released: boolean }> {
    const cached = await this.redis.getdel(reservationKey(orderId));
    if (cached === null) {
      return { released: false };
    }
    const { sku, quantity } = JSON.parse(cached) as Reservation;
    await this.db.query('UPDATE shop.stock SET available = available + $2 WHERE sku = $1', [sku, quantity]);
    this.logger.log(`released the reservation of order ${orderId}`);
    return { released: true };
  }
}
