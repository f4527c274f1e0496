import { Injectable, SetMetadata, UnauthorizedException, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { IncomingMessage } from 'node:http';
import { config } from '../shared/config.js';

const IS_PUBLIC = 'isPublic';
/** Marks a route (or controller) as open to callers without an API key. */
export const Public = () => SetMetadata(IS_PUBLIC, true);

/** The caller, as the API key identifies it. */
export interface Principal {
  tenantId: string;
  userId: string;
}

export type AuthenticatedRequest = IncomingMessage & { principal: Principal };

/** Checks `x-api-key` and names the caller: the key's tenant, and the user from `x-user-id`. */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(private readonly reflector: Reflector) {}

  canActivate(context: ExecutionContext): boolean {
    if (this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, [context.getHandler(), context.getClass()])) {
      return true;
    }
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const tenantId = config.gateway.apiKeys.get(String(request.headers['x-api-key']));
    if (tenantId === undefined) {
      throw new UnauthorizedException('Send a valid API key in the x-api-key header.');
    }
    request.principal = { tenantId, userId: String(request.headers['x-user-id'] ?? 'anonymous') };
    return true;
  }
}
