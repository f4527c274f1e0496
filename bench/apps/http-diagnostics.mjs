// Diagnostic configurations: single pieces of what tracing does, added to the UNTRACED app, to
// split the cost of a traced request into "what any tracer pays" and "what otel-nest adds".
//   als          a context per request: an AsyncLocalStorage context manager and context.with()
//                around the rest of the request (from the framework's first hook)
//   bind         also context.bind(ctx, req) and context.bind(ctx, res), as otel-nest and
//                instrumentation-http do (patches the emitters' listener methods per request)
//   interceptor  one global no-op Nest interceptor (Nest then runs every handler through its
//                RxJS interceptor chain)
import { context, createContextKey, ROOT_CONTEXT } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';

const KEY = createContextKey('bench diagnostic');

export async function applyDiagnostics(app, spec) {
  const parts = new Set(spec.split(',').filter(Boolean));
  if (parts.size === 0) return;
  if (parts.has('als') || parts.has('bind')) {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    const bind = parts.has('bind');
    const enter = (rawReq, rawRes, next) => {
      const ctx = ROOT_CONTEXT.setValue(KEY, rawReq);
      if (bind) {
        context.bind(ctx, rawReq);
        context.bind(ctx, rawRes);
      }
      return context.with(ctx, next);
    };
    const adapter = app.getHttpAdapter();
    if (adapter.getType() === 'fastify') {
      adapter.getInstance().addHook('onRequest', (req, reply, done) => enter(req.raw, reply.raw, done));
    } else {
      app.use((req, res, next) => enter(req, res, next));
    }
  }
  if (parts.has('interceptor')) {
    app.useGlobalInterceptors({ intercept: (_ctx, next) => next.handle() });
  }
}
