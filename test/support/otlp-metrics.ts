/**
 * OTLP/JSON metrics as the test receiver keeps them (test/support/otlp-receiver.ts, `POST /v1/metrics`):
 * one flat point per data point, with its metric's name, unit and kind, its resource's service name
 * and its scope. Exports are cumulative by default, so every export repeats the points so far:
 * {@link latestMetricPoints} keeps the newest of each series.
 */

export type MetricAttributeValue = string | number | boolean;

export interface ReceivedMetricPoint {
  /** `service.name` of the resource. */
  service: string;
  /** Instrumentation scope name (`otel-nest`, `@opentelemetry/instrumentation-undici`). */
  scope: string;
  name: string;
  unit: string;
  description: string;
  kind: 'histogram' | 'sum' | 'gauge' | 'other';
  /** For sums: monotonic (a Counter) or not (an UpDownCounter). */
  monotonic?: boolean;
  attributes: Record<string, MetricAttributeValue>;
  /** Histograms. */
  count?: number;
  sum?: number;
  bucketCounts?: number[];
  explicitBounds?: number[];
  /** Sums and gauges. */
  value?: number;
  timeUnixNano: string;
  /** The data point's exemplars as sent (the JS SDK 3.1 sends none). */
  exemplars: unknown[];
}

type Json = Record<string, any>;

function attributeValue(value: Json | undefined): MetricAttributeValue {
  if (value === undefined || value === null) {
    return '';
  }
  if ('stringValue' in value) {
    return String(value.stringValue);
  }
  if ('intValue' in value) {
    return Number(value.intValue);
  }
  if ('doubleValue' in value) {
    return Number(value.doubleValue);
  }
  if ('boolValue' in value) {
    return Boolean(value.boolValue);
  }
  return JSON.stringify(value);
}

function attributes(list: Json[] | undefined): Record<string, MetricAttributeValue> {
  const result: Record<string, MetricAttributeValue> = {};
  for (const entry of list ?? []) {
    result[String(entry.key)] = attributeValue(entry.value);
  }
  return result;
}

/** Decodes an OTLP/JSON `ExportMetricsServiceRequest`; throws on a malformed one. */
export function decodeJsonMetricsRequest(request: unknown): ReceivedMetricPoint[] {
  const body = request as Json;
  if (body === null || typeof body !== 'object' || !Array.isArray(body.resourceMetrics)) {
    throw new Error('not an ExportMetricsServiceRequest (no resourceMetrics array)');
  }
  const points: ReceivedMetricPoint[] = [];
  for (const resourceMetrics of body.resourceMetrics as Json[]) {
    const service = String(attributes(resourceMetrics.resource?.attributes)['service.name'] ?? '');
    for (const scopeMetrics of (resourceMetrics.scopeMetrics ?? []) as Json[]) {
      const scope = String(scopeMetrics.scope?.name ?? '');
      for (const metric of (scopeMetrics.metrics ?? []) as Json[]) {
        const base = { service, scope, name: String(metric.name), unit: String(metric.unit ?? ''), description: String(metric.description ?? '') };
        if (metric.histogram) {
          for (const point of metric.histogram.dataPoints ?? []) {
            points.push({
              ...base,
              kind: 'histogram',
              attributes: attributes(point.attributes),
              count: Number(point.count),
              sum: Number(point.sum),
              bucketCounts: (point.bucketCounts ?? []).map(Number),
              explicitBounds: (point.explicitBounds ?? []).map(Number),
              timeUnixNano: String(point.timeUnixNano),
              exemplars: point.exemplars ?? [],
            });
          }
        } else if (metric.sum || metric.gauge) {
          const data = metric.sum ?? metric.gauge;
          for (const point of data.dataPoints ?? []) {
            points.push({
              ...base,
              kind: metric.sum ? 'sum' : 'gauge',
              ...(metric.sum ? { monotonic: Boolean(metric.sum.isMonotonic) } : {}),
              attributes: attributes(point.attributes),
              value: Number(point.asInt ?? point.asDouble ?? 0),
              timeUnixNano: String(point.timeUnixNano),
              exemplars: point.exemplars ?? [],
            });
          }
        } else {
          points.push({ ...base, kind: 'other', attributes: {}, timeUnixNano: '0', exemplars: [] });
        }
      }
    }
  }
  return points;
}

function seriesKey(point: ReceivedMetricPoint): string {
  const attrs = Object.keys(point.attributes)
    .sort()
    .map((key) => `${key}=${String(point.attributes[key])}`)
    .join(',');
  return `${point.service}|${point.scope}|${point.name}|${attrs}`;
}

/** The newest point of each series (service, scope, name, attributes), in first-seen order. */
export function latestMetricPoints(points: readonly ReceivedMetricPoint[]): ReceivedMetricPoint[] {
  const latest = new Map<string, ReceivedMetricPoint>();
  for (const point of points) {
    const key = seriesKey(point);
    const seen = latest.get(key);
    if (seen === undefined || BigInt(point.timeUnixNano || '0') >= BigInt(seen.timeUnixNano || '0')) {
      latest.set(key, point);
    }
  }
  return [...latest.values()];
}

/** One line per latest series, for failure messages. */
export function describeMetricPoints(points: readonly ReceivedMetricPoint[]): string {
  const latest = latestMetricPoints(points);
  if (latest.length === 0) {
    return '(no metric points)';
  }
  return latest
    .map((p) => `${p.service} ${p.name} [${p.unit}] ${JSON.stringify(p.attributes)} ${p.kind === 'histogram' ? `count=${p.count}` : `value=${p.value}`}`)
    .join('\n');
}
