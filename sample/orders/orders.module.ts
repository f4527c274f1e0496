import { Inject, Module, type OnApplicationBootstrap } from '@nestjs/common';
import { ClientsModule, type ClientProxy } from '@nestjs/microservices';
import { OtelClientKafka, OtelClientNats, OtelModule, otelRmqClient } from 'otel-nest';
import { OtelSagaModule } from 'otel-nest/saga';
import { config } from '../shared/config.js';
import { BAGGAGE_TO_ATTRIBUTES, INVENTORY_CLIENT, ORDER_EVENTS_CLIENT, PAYMENT_CLIENT } from '../shared/contracts.js';
import { DatabaseModule } from '../shared/database.module.js';
import { OrdersController } from './orders.controller.js';
import { OrdersRepository } from './orders.repository.js';
import { OrdersService } from './orders.service.js';
import { PlaceOrderSaga } from './place-order.saga.js';

@Module({
  imports: [
    OtelModule.forRoot({ serviceName: 'orders', baggageToAttributes: BAGGAGE_TO_ATTRIBUTES }),
    OtelSagaModule.forRoot(),
    DatabaseModule,
    ClientsModule.register([
      otelRmqClient(INVENTORY_CLIENT, config.rabbitmq),
      { name: PAYMENT_CLIENT, customClass: OtelClientNats, options: config.nats },
      {
        name: ORDER_EVENTS_CLIENT,
        customClass: OtelClientKafka,
        options: { client: { clientId: 'orders', brokers: config.kafka.brokers }, producerOnlyMode: true },
      },
    ]),
  ],
  controllers: [OrdersController],
  providers: [OrdersRepository, OrdersService, PlaceOrderSaga],
})
export class OrdersModule implements OnApplicationBootstrap {
  constructor(
    @Inject(INVENTORY_CLIENT) private readonly inventory: ClientProxy,
    @Inject(PAYMENT_CLIENT) private readonly payment: ClientProxy,
    @Inject(ORDER_EVENTS_CLIENT) private readonly events: ClientProxy,
  ) {}

  /** Connects to the brokers at startup: fails fast when one is down, and keeps connecting out of the first order's trace. */
  async onApplicationBootstrap(): Promise<void> {
    await Promise.all([this.inventory.connect(), this.payment.connect(), this.events.connect()]);
  }
}
