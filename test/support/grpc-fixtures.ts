import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Observable } from 'rxjs';
import type { TraceService } from '../../lib/index.js';

/** The proto of the gRPC end-to-end tests. */
export const ORDERS_PROTO = fileURLToPath(new URL('../fixtures/grpc/orders.proto', import.meta.url));
export const ORDERS_PACKAGE = 'orders.v1';
export const ORDER_SERVICE = 'OrderService';
/** `rpc.method` of each method of orders.proto. */
export const M = {
  get: 'orders.v1.OrderService/GetOrder',
  list: 'orders.v1.OrderService/ListOrders',
  upload: 'orders.v1.OrderService/UploadOrders',
  chat: 'orders.v1.OrderService/Chat',
  chatCall: 'orders.v1.OrderService/ChatCall',
  uploadCall: 'orders.v1.OrderService/UploadCall',
  forgotten: 'orders.v1.OrderService/Forgotten',
} as const;

export interface OrderRequest {
  id: string;
  failCode?: number;
  delayMs?: number;
  count?: number;
  thenGet?: string;
}

export interface Order {
  id: string;
  traceId: string;
  spanId: string;
  tenant: string;
  traceparent: string;
}

/** What a handler answers with: the span its code runs in, the baggage it sees, the traceparent it received. */
export function orderView(traces: TraceService, id: string, metadata?: grpc.Metadata): Order {
  return {
    id,
    traceId: traces.getTraceId() ?? '',
    spanId: traces.getSpanId() ?? '',
    tenant: traces.getBaggage('tenant.id') ?? '',
    traceparent: String(metadata?.get('traceparent')[0] ?? ''),
  };
}

export interface Summary {
  count: number;
  traceId: string;
  spanId: string;
  ids: string[];
}

/** The service as Nest's `ClientGrpc#getService` gives it (methods in lower camel case). */
export interface OrderServiceClient {
  getOrder(request: OrderRequest, metadata?: grpc.Metadata, options?: grpc.CallOptions): Observable<Order>;
  listOrders(request: OrderRequest, metadata?: grpc.Metadata): Observable<Order>;
  uploadOrders(requests: Observable<OrderRequest>, metadata?: grpc.Metadata): Observable<Summary>;
  chat(requests: Observable<OrderRequest>, metadata?: grpc.Metadata): Observable<Order>;
  chatCall(requests: Observable<OrderRequest>, metadata?: grpc.Metadata): Observable<Order>;
  uploadCall(requests: Observable<OrderRequest>, metadata?: grpc.Metadata): Observable<Summary>;
  forgotten(request: OrderRequest): Observable<Order>;
}

export { freePort } from './private-brokers.js';

/** A plain, untraced grpc-js client of orders.proto (no otel-nest, no instrumentation). */
export function rawOrdersClient(target: string): grpc.Client & Record<string, any> {
  const definition = protoLoader.loadSync(ORDERS_PROTO);
  const pkg = grpc.loadPackageDefinition(definition) as any;
  return new pkg.orders.v1.OrderService(target, grpc.credentials.createInsecure());
}

/** A unary call of the raw client, resolving with the response, its initial metadata and its status. */
export function rawUnary(
  client: grpc.Client & Record<string, any>,
  request: OrderRequest,
  metadata: grpc.Metadata,
): Promise<{ error?: grpc.ServiceError; response?: Order; headers?: grpc.Metadata; trailers?: grpc.Metadata }> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    let trailers: grpc.Metadata | undefined;
    const call = client.GetOrder(request, metadata, (error: grpc.ServiceError | null, response: Order) => {
      // The status (with the trailers) arrives after the callback's response in grpc-js.
      setImmediate(() => resolve({ error: error ?? undefined, response, headers, trailers }));
    });
    call.on('metadata', (received: grpc.Metadata) => (headers = received));
    call.on('status', (status: grpc.StatusObject) => (trailers = status.metadata));
  });
}
