import { createHash } from 'node:crypto';

/**
 * The trace viewer's web page: one static HTML document with its CSS and JavaScript inline, no
 * framework and nothing fetched but the JSON API. Span data never enters the markup: the script
 * builds every element with `textContent` and `setAttribute`, so names and attributes sent over
 * the network are shown, never interpreted. The Content-Security-Policy allows exactly this
 * script and this style (by hash) as a second line of defence.
 */

const STYLE = `
:root {
  --fg: #1f2933; --muted: #6b7785; --line: #e3e8ee; --bg: #f7f9fb; --panel: #ffffff;
  --accent: #2457c5; --error: #d92d20; --error-bg: #fde8e7; --ok: #1a7f37; --row-h: 28px;
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg);
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; }
button { font: inherit; cursor: pointer; }
.top { display: flex; align-items: center; gap: 16px; padding: 8px 16px; background: #16202c; color: #dfe6ee; }
.top a.brand { color: #fff; font-weight: 600; }
.top code { color: #fff; }
.top .spacer { flex: 1; }
.top button { background: #2b3a4c; color: #fff; border: 1px solid #44566c; border-radius: 4px; padding: 2px 10px; }
.top .status { color: #ffb4ab; }
main { padding: 16px; }
h1 { font-size: 18px; margin: 0 0 8px; word-break: break-all; }
h2 { font-size: 16px; margin: 0 0 8px; word-break: break-all; }
h3 { font-size: 13px; margin: 16px 0 6px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
.muted { color: var(--muted); }
.empty { padding: 24px; background: var(--panel); border: 1px dashed var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; }
table.traces { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; }
table.traces th, table.traces td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
table.traces th { font-size: 12px; color: var(--muted); font-weight: 600; }
table.traces th.num { text-align: right; }
table.traces tr.trace-row { cursor: pointer; }
table.traces tr.trace-row:hover { background: #eef3fb; }
table.traces tr.trace-row.has-error td:first-child { box-shadow: inset 3px 0 0 var(--error); }
td.num { text-align: right; white-space: nowrap; }
.trace-id { color: var(--muted); font-size: 11px; }
.service-tag { display: inline-block; padding: 0 6px; border-radius: 3px; color: #fff; font-size: 11px; font-weight: 600; line-height: 18px; margin-right: 4px; white-space: nowrap; }
.error-badge { display: inline-block; padding: 0 6px; border-radius: 3px; background: var(--error); color: #fff; font-size: 11px; font-weight: 700; line-height: 18px; margin-left: 6px; }
.ok-badge { color: var(--ok); font-size: 12px; }
.kind-tag { color: var(--muted); font-size: 10px; margin-left: 6px; letter-spacing: .03em; }
.orphan { color: #9a6700; font-size: 11px; margin-left: 6px; }
.trace-head { margin-bottom: 12px; }
.trace-head .meta { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center; color: var(--muted); }
.related a { margin-right: 10px; }
.logs { margin-top: 16px; }
.logs h2 { font-size: 14px; margin: 0 0 6px; }
.log-table { border-collapse: collapse; width: 100%; font-size: 12px; }
.log-table td { padding: 2px 8px 2px 0; vertical-align: top; }
.log-body { white-space: pre-wrap; word-break: break-all; }
.trace-body { display: grid; grid-template-columns: minmax(0, 1fr) 440px; gap: 16px; align-items: start; }
.waterfall { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; overflow: hidden; }
.wf-row { display: grid; grid-template-columns: 420px minmax(0, 1fr); min-height: var(--row-h); border-bottom: 1px solid #f0f3f6; }
.wf-row.axis-row { border-bottom: 1px solid var(--line); background: #fafbfc; font-size: 11px; color: var(--muted); }
.span-row { cursor: pointer; }
.span-row:hover { background: #f3f7fd; }
.span-row.selected { background: #e6efff; }
.span-row.error { background: var(--error-bg); }
.span-row.error.selected { background: #fbd3d0; }
.span-row:focus { outline: 2px solid var(--accent); outline-offset: -2px; }
.label-col { display: flex; align-items: center; min-width: 0; padding: 4px 8px; white-space: nowrap; overflow: hidden; border-right: 1px solid var(--line); }
.span-name { overflow: hidden; text-overflow: ellipsis; min-width: 0; }
.guide { color: #c3ccd6; margin-right: 2px; }
.timeline-col { position: relative; min-width: 0; }
.axis { position: relative; height: 100%; min-height: 22px; }
.tick { position: absolute; top: 0; bottom: 0; border-left: 1px solid var(--line); padding-left: 3px; line-height: 22px; white-space: nowrap; }
.span-bar { position: absolute; top: 7px; height: 14px; min-width: 2px; border-radius: 2px; opacity: .9; }
.span-bar.error { box-shadow: 0 0 0 2px var(--error); }
.bar-label { position: absolute; top: 5px; font-size: 11px; color: var(--muted); white-space: nowrap; }
.bar-label.inside { top: 7px; line-height: 14px; padding: 0 6px; color: #fff; text-align: right; overflow: hidden; }
.event-tick { position: absolute; top: 4px; width: 2px; height: 20px; background: #1f2933; opacity: .55; }
.link-marker { border: 1px solid #b8c4d3; background: #fff; color: var(--accent); border-radius: 10px; font-size: 11px; padding: 0 6px; margin-left: 6px; line-height: 16px; }
.link-marker:hover { background: #eef3fb; }
.link-marker.missing { color: var(--muted); }
.details { position: sticky; top: 8px; max-height: calc(100vh - 16px); overflow: auto; background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px; }
.details.flash { box-shadow: 0 0 0 2px var(--accent); }
dl.props { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 2px 12px; margin: 8px 0 0; font-size: 12px; }
dl.props dt { color: var(--muted); }
dl.props dd { margin: 0; word-break: break-all; }
table.kv td { padding: 2px 6px 2px 0; border-bottom: 1px solid #f0f3f6; vertical-align: top; font-size: 12px; word-break: break-all; }
table.kv td.key { color: #44546a; width: 42%; word-break: normal; overflow-wrap: anywhere; }
.event, .link { border-left: 3px solid var(--line); padding: 2px 0 2px 8px; margin: 6px 0; }
.event.exception { border-left-color: var(--error); }
.link button { border: 0; background: none; color: var(--accent); padding: 0; text-align: left; }
.status-error { color: var(--error); font-weight: 700; }
.status-ok { color: var(--ok); }
@media (max-width: 1100px) { .trace-body { grid-template-columns: 1fr; } .details { position: static; max-height: none; } .wf-row { grid-template-columns: 300px minmax(0, 1fr); } }
`;

// Written without template literals so that this TypeScript template string holds it verbatim.
const SCRIPT = String.raw`
(function () {
  'use strict';
  var KINDS = ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'];
  var STATUS = ['UNSET', 'OK', 'ERROR'];
  // No red: red means ERROR.
  var PALETTE = ['#2f6fdf', '#e08a00', '#12998a', '#8250df', '#3f8f29', '#c2459b', '#0b8bb0', '#7d6608', '#5a67d8', '#b35c00', '#4d7c8a', '#9b4dca'];
  var REFRESH_MS = 2000;

  var app = document.getElementById('app');
  var autoRefresh = document.getElementById('auto-refresh');
  var statusLine = document.getElementById('status');
  var colors = new Map();
  var state = { route: null, text: '', detail: null, names: new Map(), selected: null };

  document.getElementById('otlp-endpoint').textContent = location.origin + '/v1/traces';

  function h(tag, props, children) {
    var el = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (key) {
        var value = props[key];
        if (value === null || value === undefined || value === false) return;
        if (key === 'class') el.className = value;
        else if (key === 'text') el.textContent = String(value);
        else if (key === 'style') Object.keys(value).forEach(function (name) { el.style.setProperty(name, String(value[name])); });
        else if (key === 'data') Object.keys(value).forEach(function (name) { el.dataset[name] = String(value[name]); });
        else if (key.slice(0, 2) === 'on') el.addEventListener(key.slice(2), value);
        else el.setAttribute(key, String(value));
      });
    }
    add(el, children);
    return el;
  }
  function add(el, children) {
    if (children === null || children === undefined) return;
    (Array.isArray(children) ? children : [children]).forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      el.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
    });
  }

  function colorOf(service) {
    if (!colors.has(service)) colors.set(service, PALETTE[colors.size % PALETTE.length]);
    return colors.get(service);
  }
  function serviceTag(service) {
    return h('span', { class: 'service-tag', style: { background: colorOf(service) }, title: 'service.name', data: { service: service } }, service);
  }
  function nanosBetween(from, to) {
    return Number(BigInt(to) - BigInt(from)) / 1e6;
  }
  function duration(ms) {
    if (!(ms >= 0)) return '?';
    if (ms < 1) return Math.round(ms * 1000) + ' µs';
    if (ms < 10) return ms.toFixed(2) + ' ms';
    if (ms < 1000) return ms.toFixed(1) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(2) + ' s';
    return (ms / 60000).toFixed(1) + ' min';
  }
  function clock(nanos) {
    var date = new Date(Number(BigInt(nanos) / BigInt(1000000)));
    var pad = function (n, w) { return String(n).padStart(w || 2, '0'); };
    return pad(date.getHours()) + ':' + pad(date.getMinutes()) + ':' + pad(date.getSeconds()) + '.' + pad(date.getMilliseconds(), 3);
  }
  function shortId(id) { return id.slice(0, 8) + '…'; }
  function traceHref(traceId, spanId) {
    return '#/trace/' + encodeURIComponent(traceId) + (spanId ? '/span/' + encodeURIComponent(spanId) : '');
  }
  function valueText(value) {
    return typeof value === 'string' ? value : JSON.stringify(value);
  }
  function kindName(kind) { return KINDS[kind] || 'KIND ' + kind; }
  function isError(span) { return span.status.code === 2; }

  function parseRoute() {
    if (location.hash && location.hash !== '#') {
      var m = /^#\/trace\/([0-9a-f]{32})(?:\/span\/([0-9a-f]{16}))?$/.exec(location.hash);
      return m ? { view: 'trace', traceId: m[1], spanId: m[2] || null } : { view: 'list' };
    }
    var p = /^\/trace\/([0-9a-fA-F]{32})\/?$/.exec(location.pathname);
    return p ? { view: 'trace', traceId: p[1].toLowerCase(), spanId: null } : { view: 'list' };
  }

  function load(url) {
    return fetch(url, { cache: 'no-store' }).then(function (response) {
      if (response.status === 404) return null;
      if (!response.ok) throw new Error(url + ' answered ' + response.status);
      return response.text();
    });
  }
  function setStatus(message) { statusLine.textContent = message || ''; }

  function refresh() {
    var route = state.route;
    var lists = load('/api/traces');
    var details = route.view === 'trace' ? load('/api/traces/' + route.traceId) : Promise.resolve('');
    return Promise.all([lists, details]).then(function (texts) {
      if (state.route !== route) return;
      setStatus('');
      var traces = JSON.parse(texts[0] || '[]');
      // Colours follow first appearance, oldest trace first, so they stay put as traces arrive.
      traces.slice().reverse().forEach(function (t) { t.services.forEach(colorOf); });
      traces.forEach(function (t) { state.names.set(t.traceId, t.rootName); });
      var text = route.view === 'list' ? texts[0] : texts[1] + '\n' + texts[0];
      if (text === state.text) return;
      state.text = text;
      if (route.view === 'list') renderList(traces);
      else if (texts[1] === null) renderMissing(route.traceId);
      else renderTrace(JSON.parse(texts[1]));
    }).catch(function (error) {
      setStatus('viewer unreachable: ' + error.message);
    });
  }

  function onRoute() {
    var route = parseRoute();
    var previous = state.route;
    state.route = route;
    if (previous && previous.view === 'trace' && route.view === 'trace' && previous.traceId === route.traceId) {
      selectSpan(route.spanId, true);
      return;
    }
    state.text = '';
    state.detail = null;
    state.selected = route.spanId;
    app.textContent = '';
    add(app, h('p', { class: 'muted' }, 'Loading…'));
    refresh();
  }

  function renderList(traces) {
    document.title = 'Traces · otel-nest';
    app.textContent = '';
    add(app, h('h1', null, ['Recent traces ', h('span', { class: 'muted' }, '(' + traces.length + ', newest first)')]));
    if (traces.length === 0) {
      add(app, h('div', { class: 'empty' }, [
        'No traces yet. Point an OTLP/HTTP JSON exporter here: ',
        h('code', null, 'OTEL_EXPORTER_OTLP_ENDPOINT=' + location.origin),
        ' (or the exporter url ', h('code', null, location.origin + '/v1/traces'), ').',
      ]));
      return;
    }
    var rows = traces.map(function (t) {
      return h('tr', {
        class: 'trace-row' + (t.error ? ' has-error' : ''),
        data: { traceId: t.traceId },
        onclick: function (event) { if (!event.target.closest('a')) location.hash = traceHref(t.traceId); },
      }, [
        h('td', { class: 'mono', title: new Date(Number(BigInt(t.startTimeUnixNano) / BigInt(1000000))).toISOString() }, clock(t.startTimeUnixNano)),
        h('td', null, [
          h('a', { class: 'root-name', href: traceHref(t.traceId) }, t.rootName || '(unnamed span)'),
          t.rootMissing ? h('span', { class: 'orphan', title: 'No root span was received for this trace' }, 'root not received') : null,
          h('div', { class: 'trace-id mono' }, t.traceId),
        ]),
        h('td', { class: 'services' }, t.services.map(serviceTag)),
        h('td', { class: 'num span-count' }, t.spanCount + (t.droppedSpans ? ' (+' + t.droppedSpans + ' dropped)' : '')),
        h('td', { class: 'num duration' }, duration(t.durationMs)),
        h('td', { class: 'status' }, t.error ? h('span', { class: 'error-badge' }, 'ERROR' + (t.errorCount > 1 ? ' ×' + t.errorCount : '')) : h('span', { class: 'ok-badge' }, 'no errors')),
        h('td', { class: 'related' }, t.relatedTraceIds.map(function (id) {
          return h('a', { class: 'related-trace', href: traceHref(id), title: 'trace ' + id }, '↔ ' + (state.names.get(id) || shortId(id)));
        })),
      ]);
    });
    add(app, h('table', { class: 'traces' }, [
      h('thead', null, h('tr', null, ['Started', 'Root span', 'Services', 'Spans', 'Duration', 'Status', 'Related traces'].map(function (title) { return h('th', { class: title === 'Spans' || title === 'Duration' ? 'num' : null }, title); }))),
      h('tbody', null, rows),
    ]));
  }

  function renderMissing(traceId) {
    app.textContent = '';
    add(app, h('div', { class: 'empty' }, [
      'Trace ', h('code', null, traceId), ' is not in this viewer (not received yet, or evicted). ',
      h('a', { href: '#/' }, 'All traces'),
    ]));
  }

  function niceStep(total) {
    var rough = total / 6;
    var power = Math.pow(10, Math.floor(Math.log10(rough)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * power >= rough) return steps[i] * power;
    return 10 * power;
  }

  function renderTrace(detail) {
    var summary = detail.summary;
    state.detail = detail;
    document.title = summary.rootName + ' · otel-nest';
    var total = Math.max(summary.durationMs, 0.001);
    var start = summary.startTimeUnixNano;
    var pct = function (ms) { return Math.min(100, Math.max(0, (ms / total) * 100)); };

    var ticks = [];
    var step = niceStep(total);
    for (var t = 0; t <= total + 1e-9 && ticks.length < 20; t += step) {
      ticks.push(h('div', { class: 'tick', style: { left: pct(t) + '%' } }, duration(t)));
    }

    var rows = detail.rows.map(function (row) {
      var span = row.span;
      var offset = nanosBetween(start, span.startTimeUnixNano);
      var length = Math.max(0, nanosBetween(span.startTimeUnixNano, span.endTimeUnixNano));
      var left = pct(offset);
      var width = Math.max(0, Math.min(100 - left, pct(length)));
      var color = colorOf(span.service);
      var markers = [];
      if (row.linksTo.length) {
        markers.push(h('button', {
          type: 'button',
          class: 'link-marker link-out' + (row.linksTo.some(function (l) { return l.found; }) ? '' : ' missing'),
          title: row.linksTo.map(linkTitle).join('\n'),
          onclick: function (event) { event.stopPropagation(); followLinks(row, row.linksTo); },
        }, '↪ linked to ' + row.linksTo.length));
      }
      if (row.linkedFrom.length) {
        markers.push(h('button', {
          type: 'button',
          class: 'link-marker link-in',
          title: row.linkedFrom.map(linkTitle).join('\n'),
          onclick: function (event) { event.stopPropagation(); followLinks(row, row.linkedFrom); },
        }, '↩ linked from ' + row.linkedFrom.length));
      }
      var guides = row.depth > 0 ? h('span', { class: 'guide', style: { 'padding-left': ((row.depth - 1) * 16) + 'px' } }, '└') : null;
      return h('div', {
        class: 'wf-row span-row' + (isError(span) ? ' error' : ''),
        tabindex: '0',
        data: { spanId: span.spanId, service: span.service, depth: row.depth },
        onclick: function () { choose(span.spanId); },
        onkeydown: function (event) { if (event.key === 'Enter') choose(span.spanId); },
      }, [
        h('div', { class: 'label-col', title: span.name }, [
          guides,
          serviceTag(span.service),
          h('span', { class: 'span-name' }, span.name || '(unnamed)'),
          isError(span) ? h('span', { class: 'error-badge', title: span.status.message || 'status ERROR' }, '⚠ ERROR') : null,
          h('span', { class: 'kind-tag' }, kindName(span.kind)),
          row.parentMissing ? h('span', { class: 'orphan', title: 'parent ' + span.parentSpanId + ' was not received' }, '⤴ parent missing') : null,
        ].concat(markers)),
        h('div', { class: 'timeline-col' }, [
          h('div', { class: 'span-bar' + (isError(span) ? ' error' : ''), style: { left: left + '%', width: width + '%', background: color }, title: duration(length) }),
          // The duration goes inside a wide bar, else after it, or before it near the right edge.
          h('span', {
            class: 'bar-label' + (width > 14 ? ' inside' : ''),
            style: width > 14 ? { left: left + '%', width: width + '%' } : left + width > 85 ? { right: (100 - left + 0.5) + '%' } : { left: (left + width + 0.5) + '%' },
          }, duration(length)),
        ].concat(span.events.map(function (event) {
          return h('div', { class: 'event-tick', title: event.name, style: { left: pct(nanosBetween(start, event.timeUnixNano)) + '%' } });
        }))),
      ]);
    });

    var related = summary.relatedTraceIds.length ? h('div', { class: 'related' }, ['Related traces (span links): '].concat(summary.relatedTraceIds.map(function (id) {
      return h('a', { class: 'related-trace', href: traceHref(id), title: 'trace ' + id }, '↔ ' + (state.names.get(id) || shortId(id)));
    }))) : null;

    app.textContent = '';
    add(app, h('section', { class: 'trace-head' }, [
      h('a', { href: '#/' }, '← all traces'),
      h('h1', { class: 'trace-title' }, summary.rootName || '(unnamed span)'),
      h('div', { class: 'meta' }, [
        h('span', { class: 'mono' }, 'trace ' + summary.traceId),
        h('span', null, clock(start)),
        h('span', null, duration(summary.durationMs)),
        h('span', null, summary.spanCount + (summary.spanCount === 1 ? ' span' : ' spans')),
        h('span', { class: 'legend' }, summary.services.map(serviceTag)),
        summary.error ? h('span', { class: 'error-badge' }, summary.errorCount + ' ERROR') : null,
        summary.rootMissing ? h('span', { class: 'orphan' }, 'root span not received') : null,
        summary.droppedSpans ? h('span', { class: 'orphan' }, summary.droppedSpans + ' spans dropped (per-trace limit)') : null,
      ]),
      related,
    ]));
    add(app, h('div', { class: 'trace-body' }, [
      h('div', { class: 'waterfall' }, [
        h('div', { class: 'wf-row axis-row' }, [h('div', { class: 'label-col' }, 'Service · span'), h('div', { class: 'timeline-col axis' }, ticks)]),
      ].concat(rows)),
      h('aside', { id: 'details', class: 'details' }, h('p', { class: 'muted' }, 'Click a span to see its attributes, events, links, status and resource.')),
    ]));
    var logs = detail.logs || [];
    if (logs.length) {
      var spanNames = new Map(detail.rows.map(function (row) { return [row.span.spanId, row.span.name]; }));
      add(app, h('section', { class: 'logs', id: 'logs' }, [
        h('h2', null, logs.length + (logs.length === 1 ? ' log line' : ' log lines')),
        h('table', { class: 'log-table' }, h('tbody', null, logs.map(function (line) {
          return h('tr', { class: 'log-row', data: { spanId: line.spanId || '' } }, [
            h('td', { class: 'mono' }, line.timeUnixNano === '0' ? '' : clock(line.timeUnixNano)),
            h('td', null, line.service ? serviceTag(line.service) : ''),
            h('td', { class: 'mono' }, line.severity),
            h('td', null, line.spanId && spanNames.has(line.spanId)
              ? h('button', { type: 'button', class: 'jump', title: 'span ' + line.spanId, onclick: function () { choose(line.spanId); } }, spanNames.get(line.spanId))
              : (line.spanId ? shortId(line.spanId) : '')),
            h('td', { class: 'mono log-body' }, line.body),
          ]);
        }))),
      ]));
    }
    selectSpan(state.selected, false);
  }

  function linkTitle(end) {
    return (end.found ? end.name + ' (' + end.service + ')' : 'span ' + end.spanId + ' (not received)') + (end.sameTrace ? ', this trace' : ', trace ' + end.traceId);
  }

  function choose(spanId) {
    history.replaceState(null, '', traceHref(state.route.traceId, spanId));
    state.route = parseRoute();
    selectSpan(spanId, false);
  }

  function followLinks(row, ends) {
    var found = ends.filter(function (end) { return end.found; });
    if (ends.length === 1 && found.length === 1) {
      location.hash = traceHref(found[0].traceId, found[0].spanId);
    } else {
      choose(row.span.spanId);
      var section = document.getElementById('details-links');
      if (section) section.scrollIntoView({ block: 'nearest' });
    }
  }

  function selectSpan(spanId, scroll) {
    state.selected = spanId;
    var rows = app.querySelectorAll('.span-row');
    var chosen = null;
    rows.forEach(function (el) {
      var on = el.dataset.spanId === spanId;
      el.classList.toggle('selected', on);
      if (on) chosen = el;
    });
    var detail = state.detail;
    var row = detail && detail.rows.find(function (r) { return r.span.spanId === spanId; });
    if (row) renderDetails(row, detail.summary);
    if (chosen && scroll) {
      chosen.scrollIntoView({ block: 'center' });
      var panel = document.getElementById('details');
      panel.classList.add('flash');
      setTimeout(function () { panel.classList.remove('flash'); }, 600);
    }
  }

  function kvTable(attributes) {
    var keys = Object.keys(attributes).sort();
    if (!keys.length) return h('p', { class: 'muted' }, 'none');
    return h('table', { class: 'kv' }, h('tbody', null, keys.map(function (key) {
      return h('tr', null, [h('td', { class: 'key mono' }, key), h('td', { class: 'value mono' }, valueText(attributes[key]))]);
    })));
  }

  function linkItem(end, direction) {
    var label = (direction === 'to' ? '↪ to ' : '↩ from ') + (end.found ? end.name + ' · ' + end.service : 'span ' + end.spanId + ' (not received)');
    var where = end.sameTrace ? 'this trace' : 'trace ' + end.traceId;
    return h('div', { class: 'link link-' + direction }, [
      end.found
        ? h('button', { type: 'button', class: 'jump', onclick: function () { location.hash = traceHref(end.traceId, end.spanId); } }, label)
        : h('span', { class: 'muted' }, label),
      h('div', { class: 'muted mono' }, where + ' · span ' + end.spanId),
      Object.keys(end.attributes).length ? kvTable(end.attributes) : null,
    ]);
  }

  function renderDetails(row, summary) {
    var span = row.span;
    var panel = document.getElementById('details');
    if (!panel) return;
    var offset = nanosBetween(summary.startTimeUnixNano, span.startTimeUnixNano);
    var parent = span.parentSpanId ? state.detail.rows.find(function (r) { return r.span.spanId === span.parentSpanId; }) : null;
    var status = STATUS[span.status.code] || String(span.status.code);
    var props = [
      ['Service', serviceTag(span.service)],
      ['Kind', kindName(span.kind)],
      ['Status', h('span', { class: span.status.code === 2 ? 'status-error' : span.status.code === 1 ? 'status-ok' : '' }, status + (span.status.message ? ': ' + span.status.message : ''))],
      ['Start', '+' + duration(offset) + ' (' + clock(span.startTimeUnixNano) + ')'],
      ['Duration', duration(nanosBetween(span.startTimeUnixNano, span.endTimeUnixNano))],
      ['Span ID', h('span', { class: 'mono' }, span.spanId)],
      ['Parent', span.parentSpanId
        ? (parent ? h('a', { href: traceHref(span.traceId, span.parentSpanId) }, parent.span.name + ' · ' + span.parentSpanId) : h('span', { class: 'mono' }, span.parentSpanId + ' (not received)'))
        : 'none (root)'],
      ['Trace ID', h('span', { class: 'mono' }, span.traceId)],
      ['Scope', span.scope.name + (span.scope.version ? ' ' + span.scope.version : '')],
    ];
    if (span.traceState) props.push(['Trace state', span.traceState]);
    panel.textContent = '';
    add(panel, [
      h('h2', { class: 'details-name' }, span.name || '(unnamed)'),
      h('dl', { class: 'props' }, props.reduce(function (items, pair) { return items.concat([h('dt', null, pair[0]), h('dd', null, pair[1])]); }, [])),
      h('h3', null, 'Attributes (' + Object.keys(span.attributes).length + ')'),
      kvTable(span.attributes),
      h('h3', null, 'Events (' + span.events.length + ')'),
      span.events.length ? h('div', null, span.events.map(function (event) {
        return h('div', { class: 'event' + (event.name === 'exception' ? ' exception' : '') }, [
          h('div', null, [h('span', { class: 'mono muted' }, '+' + duration(nanosBetween(summary.startTimeUnixNano, event.timeUnixNano)) + ' '), event.name]),
          Object.keys(event.attributes).length ? kvTable(event.attributes) : null,
        ]);
      })) : h('p', { class: 'muted' }, 'none'),
      h('h3', { id: 'details-links' }, 'Links (' + row.linksTo.length + ' to, ' + row.linkedFrom.length + ' from)'),
      row.linksTo.length + row.linkedFrom.length
        ? h('div', null, row.linksTo.map(function (end) { return linkItem(end, 'to'); }).concat(row.linkedFrom.map(function (end) { return linkItem(end, 'from'); })))
        : h('p', { class: 'muted' }, 'none'),
      h('h3', null, 'Resource'),
      kvTable(span.resource),
    ]);
  }

  document.getElementById('clear').addEventListener('click', function () {
    fetch('/api/traces', { method: 'DELETE' }).then(function () { state.text = ''; location.hash = '#/'; refresh(); });
  });
  window.addEventListener('hashchange', onRoute);
  setInterval(function () { if (autoRefresh.checked && !document.hidden && state.route) refresh(); }, REFRESH_MS);
  onRoute();
})();
`;

const BODY = `<header class="top">
<a class="brand" href="#/">otel-nest · trace viewer</a>
<span>OTLP/HTTP JSON → <code id="otlp-endpoint"></code></span>
<span id="status" class="status" role="status"></span>
<span class="spacer"></span>
<label><input type="checkbox" id="auto-refresh" checked> auto-refresh</label>
<button type="button" id="clear">Clear</button>
</header>
<main id="app"></main>`;

function sha256(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

export interface ViewerPage {
  html: string;
  contentSecurityPolicy: string;
}

/** The page and the Content-Security-Policy that allows its inline script and style, and nothing else. */
export function viewerPage(): ViewerPage {
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>otel-nest trace viewer</title>
<style>${STYLE}</style>
</head>
<body>
${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`;
  const contentSecurityPolicy = [
    "default-src 'none'",
    `script-src ${sha256(SCRIPT)}`,
    `style-src ${sha256(STYLE)}`,
    "connect-src 'self'",
    "img-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { html, contentSecurityPolicy };
}
