import { Logger, ValidationPipe } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { OtelConsoleLogger } from 'otel-nest';
import { config } from '../shared/config.js';
import { GatewayModule } from './gateway.module.js';

// Every line written inside a request ends with its trace_id and span_id (npm run sample shows them per trace).
const app = await NestFactory.create(GatewayModule, { logger: new OtelConsoleLogger() });
app.useGlobalPipes(new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true }));
app.enableShutdownHooks(); // SIGTERM closes the app, which flushes the last spans
await app.listen(config.gateway.port, config.host);
Logger.log(`ready: http://${config.host}:${config.gateway.port}`, 'Gateway');
