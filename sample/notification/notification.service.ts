import { Injectable, Logger } from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { Traced } from 'otel-nest';

@Injectable()
export class NotificationService {
  private readonly logger = new Logger('Notification');

  /** "Sends" an e-mail: logs it. */
  @Traced('notification.send', { attributes: (userId: string) => ({ 'notification.channel': 'email', 'notification.recipient': userId }) })
  async send(userId: string, text: string): Promise<void> {
    await sleep(5); // the mail server
    this.logger.log(`e-mail to ${userId}: ${text}`);
  }
}
