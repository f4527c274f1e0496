// Summarises a V8 .cpuprofile: self and inclusive time per function and per "area" (our dist/
// code, the OpenTelemetry SDK/API/exporter, Nest, the HTTP framework, Node internals, GC).
import { readFileSync } from 'node:fs';

export function areaOf(url, functionName) {
  if (!url) {
    if (functionName === '(garbage collector)') return 'gc';
    if (functionName === '(idle)') return 'idle';
    if (functionName === '(program)') return 'program';
    return 'native';
  }
  if (isOurs(url)) return 'otel-nest';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) {
    const pkg = m[1];
    if (pkg.startsWith('@opentelemetry/')) return pkg.replace('@opentelemetry/', 'otel:');
    if (pkg.startsWith('@nestjs/')) return 'nest';
    if (pkg === 'import-in-the-middle' || pkg === 'require-in-the-middle') return 'otel:hooks';
    return pkg;
  }
  if (url.startsWith('node:')) return 'node';
  if (url.includes('/bench/')) return 'bench-app';
  return 'other';
}

/** otel-nest's own built code: dist/ of this package, not some dependency's dist/. */
export function isOurs(url) {
  return url.includes('/dist/') && !url.includes('/node_modules/');
}

export function shortUrl(url) {
  const i = url.indexOf('/dist/');
  if (i >= 0 && isOurs(url)) return `otel-nest:${url.slice(i + 1)}`;
  const j = url.lastIndexOf('node_modules/');
  if (j >= 0) return url.slice(j + 'node_modules/'.length);
  return url.replace(/^file:\/\//, '');
}

export function summarise(file, { top = 25, fromUs = 0, toUs = Infinity } = {}) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map();
  // Sample timestamps are V8 ticks (CLOCK_MONOTONIC µs, as process.hrtime): keep only the window.
  let ts = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    ts += profile.timeDeltas[i] ?? 0;
    if (ts < fromUs || ts > toUs) continue;
    const id = profile.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const key = (n) => `${n.callFrame.functionName || '(anonymous)'} ${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
  const fnSelf = new Map();
  const fnTotal = new Map();
  const areaSelf = new Map();
  const calleesOf = new Map();
  let total = 0;
  let busy = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    total += us;
    const area = areaOf(node.callFrame.url, node.callFrame.functionName);
    if (area !== 'idle') busy += us;
    areaSelf.set(area, (areaSelf.get(area) ?? 0) + us);
    fnSelf.set(key(node), (fnSelf.get(key(node)) ?? 0) + us);
    // Inclusive: every distinct function on the stack gets the sample once; for our functions,
    // also which callee (one frame down) the time went to.
    const seen = new Set();
    let below;
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const k = key(byId.get(cur));
      if (!seen.has(k)) {
        seen.add(k);
        fnTotal.set(k, (fnTotal.get(k) ?? 0) + us);
        if (isOurs(byId.get(cur).callFrame.url)) {
          const callees = calleesOf.get(k) ?? new Map();
          const callee = below === undefined ? '(self)' : below;
          callees.set(callee, (callees.get(callee) ?? 0) + us);
          calleesOf.set(k, callees);
        }
      }
      below = k;
    }
  }
  const sortDesc = (m) => [...m].sort((a, b) => b[1] - a[1]);
  return {
    totalMs: total / 1000,
    busyMs: busy / 1000,
    areas: sortDesc(areaSelf).map(([area, us]) => ({ area, ms: us / 1000, pctBusy: (100 * us) / busy })),
    selfTop: sortDesc(fnSelf).slice(0, top).map(([fn, us]) => ({ fn, ms: us / 1000, pctBusy: (100 * us) / busy })),
    ours: sortDesc(fnTotal)
      .filter(([k]) => k.includes(' otel-nest:dist/'))
      .slice(0, top)
      .map(([fn, us]) => ({
        fn,
        inclusiveMs: us / 1000,
        pctBusy: (100 * us) / busy,
        selfMs: (fnSelf.get(fn) ?? 0) / 1000,
        callees: sortDesc(calleesOf.get(fn) ?? new Map())
          .slice(0, 8)
          .map(([callee, cus]) => ({ callee, ms: cus / 1000 })),
      })),
  };
}
