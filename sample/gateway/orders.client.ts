import {
  BadGatewayException,
  ConflictException,
  GatewayTimeoutException,
  HttpException,
  HttpStatus,
  Inject,
  Injectable,
  NotFoundException,
  ServiceUnavailableException,
  type OnModuleInit,
} from '@nestjs/common';
import type { ClientGrpc } from '@nestjs/microservices';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { lastValueFrom, type Observable } from 'rxjs';
import { config } from '../shared/config.js';
import { ORDERS_CLIENT, OrdersGrpc, type Order, type PlaceOrderRequest } from '../shared/contracts.js';
import type { CreateOrderDto } from './create-order.dto.js';
import type { Principal } from './api-key.guard.js';

/** `orders.v1.OrderService` as Nest's `getService` gives it; fields as proto-loader decodes them (unset optionals absent). */
interface OrderService {
  placeOrder(request: PlaceOrderRequest, metadata?: Metadata, options?: { deadline: number }): Observable<WireOrder>;
  getOrder(request: { id: string }, metadata?: Metadata, options?: { deadline: number }): Observable<WireOrder>;
}

type WireOrder = Omit<Order, 'amountCents' | 'paymentId' | 'reason'> & Partial<Pick<Order, 'amountCents' | 'paymentId' | 'reason'>>;

/**
 * The orders service's gRPC API (proto/orders.proto), through `OtelClientGrpc`: every call is a
 * CLIENT span `orders.v1.OrderService/...` whose context and baggage go out in the call's metadata.
 * gRPC errors become the gateway's HTTP answers.
 */
@Injectable()
export class OrdersClient implements OnModuleInit {
  private service!: OrderService;

  constructor(@Inject(ORDERS_CLIENT) private readonly client: ClientGrpc) {}

  onModuleInit(): void {
    this.service = this.client.getService<OrderService>(OrdersGrpc.service);
  }

  place(order: CreateOrderDto, principal: Principal): Promise<Order> {
    return this.call(this.service.placeOrder({ ...order, ...principal }, new Metadata(), { deadline: deadline() }));
  }

  get(id: string): Promise<Order> {
    return this.call(this.service.getOrder({ id }, new Metadata(), { deadline: deadline() }));
  }

  private async call(reply: Observable<WireOrder>): Promise<Order> {
    try {
      const order = await lastValueFrom(reply);
      return { ...order, amountCents: order.amountCents ?? null, paymentId: order.paymentId ?? null, reason: order.reason ?? null };
    } catch (error) {
      throw toHttpException(error as ServiceError);
    }
  }
}

// grpc-js takes call options only after a Metadata argument.
const deadline = (): number => Date.now() + config.orders.timeoutMs;

/** A failed call as the gateway's answer: a rejected order (402 declined, 409 another step) with its id, 404, or the orders service's failure. */
function toHttpException(error: ServiceError): HttpException {
  const message = error.details || error.message;
  switch (error.code) {
    case status.FAILED_PRECONDITION:
    case status.ABORTED: {
      const body = { id: error.metadata?.get(OrdersGrpc.orderIdTrailer)[0]?.toString(), status: 'rejected', reason: message };
      return error.code === status.FAILED_PRECONDITION ? new HttpException(body, HttpStatus.PAYMENT_REQUIRED) : new ConflictException(body);
    }
    case status.NOT_FOUND:
      return new NotFoundException(message);
    case status.UNAVAILABLE:
      return new ServiceUnavailableException(`The orders service is unavailable: ${message}`);
    case status.DEADLINE_EXCEEDED:
      return new GatewayTimeoutException('The orders service did not answer in time.');
    default:
      return new BadGatewayException(`The orders service failed: ${message}`);
  }
}
