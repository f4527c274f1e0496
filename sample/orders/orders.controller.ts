import { Controller } from '@nestjs/common';
import { GrpcMethod, RpcException } from '@nestjs/microservices';
import { status } from '@grpc/grpc-js';
import { OrdersGrpc, type Order, type PlaceOrderRequest } from '../shared/contracts.js';
import { OrdersRepository } from './orders.repository.js';
import { OrdersService } from './orders.service.js';

/** The gRPC API (proto/orders.proto), called by the gateway (which validated the input and the caller). */
@Controller()
export class OrdersController {
  constructor(
    private readonly service: OrdersService,
    private readonly repository: OrdersRepository,
  ) {}

  @GrpcMethod(OrdersGrpc.service, 'PlaceOrder')
  placeOrder(request: PlaceOrderRequest): Promise<Order> {
    return this.service.place(request);
  }

  @GrpcMethod(OrdersGrpc.service, 'GetOrder')
  async getOrder({ id }: { id: string }): Promise<Order> {
    const order = await this.repository.find(id);
    if (order === undefined) {
      throw new RpcException({ code: status.NOT_FOUND, message: `Order ${id} does not exist.` });
    }
    return order;
  }
}
