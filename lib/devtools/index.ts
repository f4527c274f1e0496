export {
  startTraceViewer,
  DEFAULT_VIEWER_HOST,
  DEFAULT_VIEWER_PORT,
  type TraceViewer,
  type TraceViewerOptions,
} from './trace-viewer.server.js';
export {
  TraceStore,
  DEFAULT_MAX_SPANS_PER_TRACE,
  DEFAULT_MAX_TRACES,
  type AddResult,
  type TraceStoreOptions,
} from './trace.store.js';
export { decodeOtlpTraceRequest, OtlpDecodeError } from './otlp-json.decoder.js';
export {
  SPAN_KIND_NAMES,
  STATUS_CODE_NAMES,
  type LinkEnd,
  type TraceDetail,
  type TraceSummary,
  type ViewerAttributes,
  type ViewerEvent,
  type ViewerLink,
  type ViewerSpan,
  type ViewerValue,
  type WaterfallRow,
} from './devtools.interfaces.js';
