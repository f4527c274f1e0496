import { OrdersGrpc } from '../shared/contracts.js';
import { compareStart, serviceOf, type TreeSpan } from './trace-tree.js';

/**
 * What the sample promises about its two traces, checked on the spans an OTLP receiver got.
 * `npm run sample -- --once` exits non-zero when one of these fails.
 */
export interface Check {
  ok: boolean;
  description: string;
}

export const SERVICES = ['gateway', 'orders', 'inventory', 'payment', 'notification'];

const SERVER = 2;
const CLIENT = 3;
const PRODUCER = 4;
const CONSUMER = 5;
const ERROR = 2;

class TraceQuery {
  constructor(readonly spans: readonly TreeSpan[]) {}

  all(match: { name?: string; service?: string; kind?: number; pattern?: string }): TreeSpan[] {
    return this.spans
      .filter(
        (span) =>
          (match.name === undefined || span.name === match.name) &&
          (match.service === undefined || serviceOf(span) === match.service) &&
          (match.kind === undefined || span.kind === match.kind) &&
          (match.pattern === undefined || span.attributes['nestjs.pattern'] === match.pattern),
      )
      .sort(compareStart);
  }

  one(match: Parameters<TraceQuery['all']>[0]): TreeSpan | undefined {
    const found = this.all(match);
    return found.length === 1 ? found[0] : undefined;
  }

  children(parent: TreeSpan | undefined): TreeSpan[] {
    return parent === undefined ? [] : this.spans.filter((span) => span.parentSpanId === parent.spanId).sort(compareStart);
  }

  isChild(child: TreeSpan | undefined, parent: TreeSpan | undefined): boolean {
    return child !== undefined && parent !== undefined && child.parentSpanId === parent.spanId;
  }

  /** The PRODUCER span of a request-reply call made by `step` and the CONSUMER span that handled it. */
  hop(step: TreeSpan | undefined, pattern: string): { send?: TreeSpan; process?: TreeSpan; ok: boolean } {
    const send = this.all({ kind: PRODUCER, pattern }).find((span) => this.isChild(span, step));
    const process = this.all({ kind: CONSUMER, pattern }).find((span) => this.isChild(span, send));
    return { send, process, ok: send !== undefined && process !== undefined };
  }

  /** Spans of a database system (`db.system.name` in current conventions, `db.system` in older ones). */
  db(system: string, service: string): TreeSpan[] {
    return this.spans.filter(
      (span) => serviceOf(span) === service && (span.attributes['db.system.name'] ?? span.attributes['db.system']) === system,
    );
  }
}

const check = (ok: boolean, description: string): Check => ({ ok, description });

/** The protocols a span speaks, by its attributes: HTTP, gRPC, or the messaging system. */
function protocolOf(span: TreeSpan): string | undefined {
  const { attributes } = span;
  if (attributes['rpc.system.name'] === 'grpc') {
    return 'gRPC';
  }
  const messaging = attributes['messaging.system'];
  if (typeof messaging === 'string') {
    return { rabbitmq: 'RabbitMQ', nats: 'NATS', kafka: 'Kafka' }[messaging] ?? messaging;
  }
  return attributes['http.request.method'] === undefined ? undefined : 'HTTP';
}

export const PROTOCOLS = ['HTTP', 'gRPC', 'RabbitMQ', 'NATS', 'Kafka'];

/**
 * Checks shared by both orders: one trace from the gateway through the saga into the other
 * services. `grpcStatus` is the PlaceOrder call's status; a failed call is an ERROR on the client
 * only (FAILED_PRECONDITION is the caller's problem, not the server's).
 */
function commonChecks(q: TraceQuery, orderId: string, status: number, grpcStatus: string, event: string): { checks: Check[]; saga?: TreeSpan } {
  const server = q.one({ name: 'POST /orders', service: 'gateway', kind: SERVER });
  const grpcClient = q.one({ name: OrdersGrpc.placeOrder, service: 'gateway', kind: CLIENT });
  const ordersServer = q.one({ name: OrdersGrpc.placeOrder, service: 'orders', kind: SERVER });
  const saga = q.one({ name: 'saga place-order', service: 'orders' });
  const producer = q.one({ name: `send ${event}`, service: 'orders', kind: PRODUCER });
  const consumer = q.one({ name: `process ${event}`, service: 'notification', kind: CONSUMER });
  const services = new Set(q.spans.map(serviceOf));
  const remote = q.spans.filter((span) => span.kind === CONSUMER && ['inventory', 'payment'].includes(serviceOf(span)));
  const protocols = new Set(q.spans.map(protocolOf).filter((protocol) => protocol !== undefined));
  const grpcSpans = [grpcClient, ordersServer];
  return {
    saga,
    checks: [
      check(SERVICES.every((name) => services.has(name)), `spans from all five services (${[...services].join(', ')})`),
      check(
        server !== undefined && server.parentSpanId === undefined && server.attributes['http.response.status_code'] === status,
        `the trace starts at the gateway's POST /orders, answered ${status}`,
      ),
      check(
        PROTOCOLS.every((protocol) => protocols.has(protocol)),
        `spans of all five protocols (${PROTOCOLS.filter((protocol) => protocols.has(protocol)).join(', ')})`,
      ),
      check(
        q.isChild(grpcClient, server) &&
          q.isChild(ordersServer, grpcClient) &&
          grpcSpans.every((span) => span?.attributes['rpc.system.name'] === 'grpc' && span.attributes['rpc.status_code'] === grpcStatus) &&
          (grpcClient?.status.code === ERROR) === (grpcStatus !== 'OK') &&
          ordersServer?.status.code !== ERROR,
        `gateway → orders over gRPC: ${OrdersGrpc.placeOrder} CLIENT → SERVER, ${grpcStatus}`,
      ),
      check(q.isChild(saga, ordersServer), "the saga runs inside the orders service's gRPC call"),
      check(saga?.attributes['saga.id'] === orderId, `saga.id is the order id ${orderId}`),
      check(
        remote.length >= 2 && remote.every((span) => span.attributes['saga.id'] === orderId && span.attributes['tenant.id'] !== undefined),
        'tenant.id and saga.id arrived as baggage: attributes of every inventory and payment CONSUMER span',
      ),
      check(
        q.isChild(consumer, producer) && consumer?.links.some((link) => link.spanId === producer?.spanId) === true,
        `notification: process ${event} is linked to (and a child of) send ${event}`,
      ),
      check(q.db('postgresql', 'orders').length > 0, 'PostgreSQL spans in orders'),
    ],
  };
}

export function checkPlacedOrder(spans: readonly TreeSpan[], orderId: string): Check[] {
  const q = new TraceQuery(spans);
  const { checks, saga } = commonChecks(q, orderId, 201, 'OK', 'order.created');
  const steps = q.children(saga);
  const [, reserve, charge] = steps;
  return [
    ...checks,
    check(
      steps.map((span) => span.name).join() === 'saga.step create,saga.step reserve,saga.step charge,saga.step confirm',
      'saga steps create → reserve → charge → confirm',
    ),
    check(q.hop(reserve, 'inventory.reserve').ok, 'reserve: orders send → inventory process (RabbitMQ)'),
    check(q.hop(charge, 'payment.charge').ok, 'charge: orders send → payment process (NATS)'),
    check(
      q.db('postgresql', 'inventory').length > 0 && q.db('redis', 'inventory').length > 0,
      'PostgreSQL and Redis spans in inventory',
    ),
    check(!spans.some((span) => span.status.code === ERROR), 'no span has status ERROR'),
  ];
}

export function checkDeclinedOrder(spans: readonly TreeSpan[], orderId: string): Check[] {
  const q = new TraceQuery(spans);
  const { checks, saga } = commonChecks(q, orderId, 402, 'FAILED_PRECONDITION', 'order.failed');
  const charge = q.one({ name: 'saga.step charge', service: 'orders' });
  const compensate = q.one({ name: 'saga.compensate place-order', service: 'orders' });
  const compensations = q.children(compensate).map((span) => span.name);
  const release = q.hop(q.one({ name: 'saga.compensation reserve' }), 'inventory.release');
  return [
    ...checks,
    check(
      charge?.status.code === ERROR && q.hop(charge, 'payment.charge').process?.status.code === ERROR,
      'the charge step failed: ERROR in orders and in payment',
    ),
    check(saga?.attributes['saga.outcome'] === 'compensated', 'the saga ended compensated'),
    check(
      compensations.join() === 'saga.compensation charge,saga.compensation reserve,saga.compensation create',
      `compensations in reverse order: refund, release, reject (${compensations.join(', ') || 'none'})`,
    ),
    check(release.ok, 'release: orders send → inventory process (RabbitMQ)'),
  ];
}
