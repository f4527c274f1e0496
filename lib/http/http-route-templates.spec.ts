import 'reflect-metadata';
import { All, Controller, Get, Head, Module, Post, Version, VERSION_NEUTRAL, VersioningType, type INestApplication } from '@nestjs/common';
import { RouterModule } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { SpanKind } from '@opentelemetry/api';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { OtelTestingModule, spanRecorder } from '../testing/index.js';
import { compileRouteTemplate, HttpRouteTemplates, RouteTemplateMatcher } from './http-route-templates.js';

describe('compileRouteTemplate: express 5 route syntax', () => {
  const cases: Array<[string, string[], string[]]> = [
    ['/orders/:id', ['/orders/42', '/orders/42/', '/ORDERS/42'], ['/orders', '/orders/42/items', '/orders/']],
    ['/files/*path', ['/files/a', '/files/a/b.txt'], ['/files', '/files/']],
    ['/legacy/*', ['/legacy/', '/legacy/a/b'], ['/legac']],
    ['/a{/:b}', ['/a', '/a/x'], ['/a/x/y']],
    ['/flights/:from-:to', ['/flights/LAX-SFO'], ['/flights/LAX']],
    ['/v1.0/x', ['/v1.0/x'], ['/v1x0/x']],
    ['/', ['/'], ['/a']],
    ['/old/(.*)', ['/old/anything/here'], ['/new/x']],
  ];
  it.each(cases)('%s', (template, matching, other) => {
    const regExp = compileRouteTemplate(template)!;
    for (const path of matching) {
      expect(regExp.test(path), path).toBe(true);
    }
    for (const path of other) {
      expect(regExp.test(path), path).toBe(false);
    }
  });

  it('gives up on syntax path-to-regexp 8 rejects rather than guessing', () => {
    for (const template of ['/a/:', '/a/b?', '/a/{b', '/a/b}', '/a/[b]']) {
      expect(compileRouteTemplate(template), template).toBeUndefined();
    }
  });
});

describe('RouteTemplateMatcher', () => {
  it('the first route in registration order wins, across literal and parametric first segments', () => {
    const matcher = new RouteTemplateMatcher([
      { method: 'GET', template: '/orders/:id' },
      { method: 'GET', template: '/orders/new' },
      { method: 'GET', template: '/:tenant/orders' },
      { method: 'GET', template: '/acme/orders' },
      { method: 'GET', template: '/api/v1/users/:id' },
      { method: 'GET', template: '/api/v1/users/me' },
    ]);
    expect(matcher.match('GET', '/orders/new')).toBe('/orders/:id');
    expect(matcher.match('GET', '/acme/orders')).toBe('/:tenant/orders');
    expect(matcher.match('GET', '/api/v1/users/me')).toBe('/api/v1/users/:id');
    expect(matcher.match('GET', '/API/V1/Users/7')).toBe('/api/v1/users/:id');
    expect(matcher.match('GET', '/nothing')).toBeUndefined();
    expect(matcher.match('POST', '/orders/1')).toBeUndefined();
  });

  it('HEAD is served by GET routes, @All() routes serve every method, unknown methods only those', () => {
    const matcher = new RouteTemplateMatcher([
      { method: 'GET', template: '/a' },
      { method: 'ALL', template: '/any' },
      { method: 'POST', template: '/b' },
    ]);
    expect(matcher.match('HEAD', '/a')).toBe('/a');
    expect(matcher.match('DELETE', '/any')).toBe('/any');
    expect(matcher.match('PROPFIND', '/any')).toBe('/any');
    expect(matcher.match('PROPFIND', '/a')).toBeUndefined();
    expect(matcher.match('POST', '/b')).toBe('/b');
    expect(new RouteTemplateMatcher([{ method: 'GET', template: '/a/b?' }]).size).toBe(0);
  });
});

@Controller('orders')
class OrdersController {
  @Get(':id')
  find(): string {
    return 'order';
  }

  @Get(':id/items/*rest')
  items(): string {
    return 'items';
  }

  @Post()
  create(): string {
    return 'created';
  }
}

@Controller({ path: 'catalog', version: ['1', '2'] })
class CatalogController {
  @Get(['products', 'items/:sku'])
  list(): string {
    return 'catalog';
  }

  @Version(VERSION_NEUTRAL)
  @Get('ping')
  ping(): string {
    return 'pong';
  }
}

@Controller('health')
class HealthController {
  @Get()
  check(): string {
    return 'ok';
  }

  @Head('deep')
  head(): string {
    return '';
  }
}

@Controller('hooks')
class HooksController {
  @All(':event')
  any(): string {
    return 'hook';
  }
}

@Module({ controllers: [HooksController] })
class HooksModule {}

/**
 * What collectRouteTemplates makes of Nest's metadata is what Nest registers: for each path, the
 * template the matcher gives before the router runs equals the route Nest reports to
 * `setOnRouteTriggered` (the SERVER span's final `http.route`).
 */
describe('HttpRouteTemplates on a real Nest application (global prefix, exclusions, URI versioning, RouterModule)', () => {
  let app: INestApplication;
  let base: string;

  beforeAll(async () => {
    @Module({
      imports: [
        OtelTestingModule.forRoot({ serviceName: 'route-templates' }),
        HooksModule,
        RouterModule.register([{ path: 'integrations', module: HooksModule }]),
      ],
      controllers: [OrdersController, CatalogController, HealthController],
    })
    class AppModule {}
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    app.setGlobalPrefix('api', { exclude: ['health'] });
    app.enableVersioning({ type: VersioningType.URI, defaultVersion: '3' });
    await app.listen(0, '127.0.0.1');
    base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    await app?.close();
  });

  beforeEach(() => spanRecorder.reset());

  function request(method: string, path: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = httpRequest(`${base}${path}`, { method, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it.each([
    ['GET', '/api/v3/orders/42', '/api/v3/orders/:id'],
    ['GET', '/api/v3/orders/42/items/a/b', '/api/v3/orders/:id/items/*rest'],
    ['POST', '/api/v3/orders', '/api/v3/orders'],
    ['GET', '/api/v1/catalog/products', '/api/v1/catalog/products'],
    ['GET', '/api/v2/catalog/items/sku-1', '/api/v2/catalog/items/:sku'],
    ['GET', '/api/catalog/ping', '/api/catalog/ping'],
    ['GET', '/v3/health', '/v3/health'],
    // The exclusion is `health` itself, not what is under it.
    ['HEAD', '/api/v3/health/deep', '/api/v3/health/deep'],
    ['DELETE', '/api/v3/integrations/hooks/push', '/api/v3/integrations/hooks/:event'],
  ])('%s %s: %s, as Nest routes it', async (method, path, template) => {
    const templates = app.get(HttpRouteTemplates);
    expect(templates.match(method, path)).toBe(template);
    const status = await request(method, path);
    expect(status).toBeLessThan(300);
    const [server] = await spanRecorder.waitForSpans((spans) => spans.some((span) => span.kind === SpanKind.SERVER));
    expect(server!.attributes['http.route']).toBe(template);
  });

  it('a path no route serves has no template at span start', async () => {
    expect(app.get(HttpRouteTemplates).match('GET', '/api/v3/nothing')).toBeUndefined();
    expect(app.get(HttpRouteTemplates).match('GET', '/v3/health/deep')).toBeUndefined();
    expect(await request('GET', '/api/v3/nothing')).toBe(404);
  });
});
