import { Inject, Injectable } from '@nestjs/common';
import pg from 'pg';
import type { Order, OrderStatus, PlaceOrder } from '../shared/contracts.js';

const COLUMNS = `id, tenant_id AS "tenantId", user_id AS "userId", sku, quantity, status,
  amount_cents AS "amountCents", payment_id AS "paymentId", reason`;

@Injectable()
export class OrdersRepository {
  constructor(@Inject(pg.Pool) private readonly db: pg.Pool) {}

  async insert({ orderId, tenantId, userId, sku, quantity }: PlaceOrder): Promise<Order> {
    const { rows } = await this.db.query<Order>(
      `INSERT INTO shop.orders (id, tenant_id, user_id, sku, quantity, status)
       VALUES ($1, $2, $3, $4, $5, 'pending') RETURNING ${COLUMNS}`,
      [orderId, tenantId, userId, sku, quantity],
    );
    return rows[0]!;
  }

  async confirm(id: string, amountCents: number, paymentId: string): Promise<Order> {
    const { rows } = await this.db.query<Order>(
      `UPDATE shop.orders SET status = 'confirmed', amount_cents = $2, payment_id = $3 WHERE id = $1 RETURNING ${COLUMNS}`,
      [id, amountCents, paymentId],
    );
    return rows[0]!;
  }

  async reject(id: string, reason: string): Promise<void> {
    const status: OrderStatus = 'rejected';
    await this.db.query('UPDATE shop.orders SET status = $2, reason = $3 WHERE id = $1', [id, status, reason]);
  }

  async find(id: string): Promise<Order | undefined> {
    const { rows } = await this.db.query<Order>(`SELECT ${COLUMNS} FROM shop.orders WHERE id = $1`, [id]);
    return rows[0];
  }
}
