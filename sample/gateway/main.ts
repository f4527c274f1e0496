import { Logger, ValidationPipe } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { config } from '../shared/config.js';
import { GatewayModule } from './gateway.module.js';

const app = await NestFactory.create(GatewayModule);
app.useGlobalPipes(new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true }));
app.enableShutdownHooks(); // SIGTERM closes the app, which flushes the last spans
await app.listen(config.gateway.port, config.host);
Logger.log(`ready: http://${config.host}:${config.gateway.port}`, 'Gateway');
