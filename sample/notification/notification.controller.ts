import { Controller } from '@nestjs/common';
import { EventPattern, Payload } from '@nestjs/microservices';
import { Topics, type OrderEvent } from '../shared/contracts.js';
import { NotificationService } from './notification.service.js';

@Controller()
export class NotificationController {
  constructor(private readonly notifications: NotificationService) {}

  @EventPattern(Topics.orderCreated)
  orderCreated(@Payload() event: OrderEvent): Promise<void> {
    return this.notifications.send(event.userId, `Your order ${event.orderId} is confirmed.`);
  }

  @EventPattern(Topics.orderFailed)
  orderFailed(@Payload() event: OrderEvent): Promise<void> {
    return this.notifications.send(event.userId, `Your order ${event.orderId} could not be placed (${event.reason}).`);
  }
}
