import { Inject, Injectable, Logger } from '@nestjs/common';
import { RpcException, type ClientProxy } from '@nestjs/microservices';
import { Metadata, status } from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { SagaFailedError, SagaOrchestrator } from 'otel-nest/saga';
import { lastValueFrom } from 'rxjs';
import { ORDER_EVENTS_CLIENT, OrdersGrpc, Topics, type Order, type OrderEvent, type PlaceOrder, type PlaceOrderRequest } from '../shared/contracts.js';
import { errorMessage, PLACE_ORDER, type PlaceOrderResults } from './place-order.saga.js';

@Injectable()
export class OrdersService {
  private readonly logger = new Logger('OrdersService');

  constructor(
    private readonly sagas: SagaOrchestrator,
    @Inject(ORDER_EVENTS_CLIENT) private readonly events: ClientProxy,
  ) {}

  /**
   * Runs the place-order saga (the order id is its saga id) and publishes the outcome to Kafka. A
   * failed saga is a gRPC error: FAILED_PRECONDITION for a declined card, ABORTED for another step,
   * with the rejected order's id in a trailer (see proto/orders.proto).
   */
  async place(request: PlaceOrderRequest): Promise<Order> {
    const order: PlaceOrder = { orderId: randomUUID(), ...request };
    try {
      const { context } = await this.sagas.run<PlaceOrder, PlaceOrderResults>(PLACE_ORDER, order, { sagaId: order.orderId });
      await this.publish(Topics.orderCreated, { orderId: order.orderId, userId: order.userId, status: 'confirmed', reason: null });
      this.logger.log(`order ${order.orderId} confirmed`);
      return context.results.confirm;
    } catch (error) {
      if (!(error instanceof SagaFailedError)) {
        throw error;
      }
      const reason = `${error.failedStep}: ${errorMessage(error.cause)}`;
      this.logger.warn(`order ${order.orderId} rejected (${reason})`);
      await this.publish(Topics.orderFailed, { orderId: order.orderId, userId: order.userId, status: 'rejected', reason });
      const metadata = new Metadata();
      metadata.set(OrdersGrpc.orderIdTrailer, order.orderId);
      const code = error.failedStep === 'charge' ? status.FAILED_PRECONDITION : status.ABORTED;
      throw new RpcException({ code, message: reason, metadata });
    }
  }

  private async publish(topic: string, event: OrderEvent): Promise<void> {
    await lastValueFrom(this.events.emit(topic, { key: event.orderId, value: event }));
  }
}
