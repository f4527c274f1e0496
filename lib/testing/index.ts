export { OtelTestingModule, type OtelTestingModuleOptions } from './otel-testing.module.js';
export { SpanRecorder, spanRecorder, type SpansPredicate, type WaitForSpansOptions } from './span-recorder.js';
export {
  childrenOf,
  findSpan,
  findSpans,
  getSpan,
  traceOf,
  type SpanFilter,
  type SpanMatcher,
  type SpanPredicate,
  type SpanReference,
} from './span-query.js';
export { expectSpan, SpanExpectation } from './span-assertions.js';
export { spanTree, type SpanTreeOptions } from './span-tree.js';
export { startTestingSdk, type TestingSdk } from './testing-sdk.js';
