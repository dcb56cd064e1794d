import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isSpanContextValid, trace } from '@opentelemetry/api';
import { afterEach, describe, expect, it } from 'vitest';
import { SpanSchema, type SpanRecord } from '../../../src/protocol/messages.js';
import { createTracing, type Tracing } from '../../../src/tracing/tracing.js';

const CP_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CP_SPAN = '00f067aa0ba902b7';
const TRACEPARENT = `00-${CP_TRACE}-${CP_SPAN}-01`;

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (stops.length) await stops.pop()!();
});

function tracing(options: Partial<Parameters<typeof createTracing>[0]> = {}): { t: Tracing; spans: SpanRecord[] } {
  const spans: SpanRecord[] = [];
  const t = createTracing({ serviceName: 'sandbox-runner-test', onSpans: (batch) => spans.push(...batch), ...options });
  stops.push(() => t.shutdown());
  return { t, spans };
}

describe('createTracing', () => {
  it('builds the span tree of a call under the control plane traceparent', async () => {
    const { t, spans } = tracing();
    const call = t.startCallSpan('tool.call', TRACEPARENT, { 'call.id': 'toolu_1', 'tool.name': 'bash' });
    await call.run('verify', () => undefined);
    await call.run('policy', () => undefined);
    await call.run('credentials', (s) => s.setAttributes({ 'credentials.names': 'GITHUB_TOKEN' }));
    await call.run('sandbox.create', (s) => s.setAttributes({ 'sandbox.driver': 'bwrap' }));
    await call.run('execute', async (exec) => {
      await exec.run('stream', (s) => s.setAttributes({ 'stream.bytes': 42 }));
    });
    call.end('ok');
    await t.forceFlush();

    for (const s of spans) expect(SpanSchema.safeParse(s).success).toBe(true);
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([CP_TRACE]));
    const byName = new Map(spans.map((s) => [s.name, s]));
    const root = byName.get('tool.call')!;
    expect(root).toMatchObject({ parentSpanId: CP_SPAN, status: 'ok', attributes: { 'call.id': 'toolu_1', 'tool.name': 'bash' } });
    for (const name of ['verify', 'policy', 'credentials', 'sandbox.create', 'execute']) {
      expect(byName.get(name)).toMatchObject({ parentSpanId: root.spanId, status: 'ok' });
    }
    expect(byName.get('stream')).toMatchObject({ parentSpanId: byName.get('execute')!.spanId, attributes: { 'stream.bytes': 42 } });
    expect(byName.get('sandbox.create')!.attributes).toEqual({ 'sandbox.driver': 'bwrap' });
    for (const s of spans) expect(BigInt(s.endTimeUnixNano)).toBeGreaterThanOrEqual(BigInt(s.startTimeUnixNano));
    expect(call.traceId).toBe(CP_TRACE);
  });

  it('starts a new trace without a traceparent or with a malformed one', async () => {
    const { t, spans } = tracing();
    t.startCallSpan('a').end();
    t.startCallSpan('b', 'not-a-traceparent').end();
    await t.forceFlush();
    expect(spans).toHaveLength(2);
    for (const s of spans) {
      expect(s.parentSpanId).toBeUndefined();
      expect(s.traceId).not.toBe(CP_TRACE);
    }
    expect(spans[0]!.traceId).not.toBe(spans[1]!.traceId);
  });

  it('records a failure and passes every string through redact', async () => {
    const { t, spans } = tracing({ redact: (s) => s.replaceAll('hunter2', '[REDACTED]') });
    const call = t.startCallSpan('tool.call', TRACEPARENT, { 'tool.input': 'echo hunter2', list: ['a', 'hunter2'] });
    await expect(call.run('execute', () => Promise.reject(new Error('exit 1: hunter2 rejected')))).rejects.toThrow('hunter2');
    call.end();
    await t.forceFlush();
    const text = JSON.stringify(spans);
    expect(text).not.toContain('hunter2');
    const exec = spans.find((s) => s.name === 'execute')!;
    expect(exec).toMatchObject({ status: 'error', attributes: { 'status.message': 'exit 1: [REDACTED] rejected' } });
    expect(spans.find((s) => s.name === 'tool.call')!.attributes).toMatchObject({ 'tool.input': 'echo [REDACTED]', list: '["a","[REDACTED]"]' });
  });

  it('registers nothing globally and keeps two tracings apart', async () => {
    const a = tracing();
    const b = tracing();
    a.t.startCallSpan('only-a').end();
    await a.t.forceFlush();
    await b.t.forceFlush();
    expect(a.spans.map((s) => s.name)).toEqual(['only-a']);
    expect(b.spans).toEqual([]);
    const globalSpan = trace.getTracer('x').startSpan('y');
    expect(isSpanContextValid(globalSpan.spanContext())).toBe(false);
    globalSpan.end();
  });

  it('exports to a real OTLP/HTTP endpoint on 127.0.0.1', async () => {
    const bodies: { path: string; type: string; body: unknown }[] = [];
    let received: () => void = () => undefined;
    const got = new Promise<void>((resolve) => (received = resolve));
    const server: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        bodies.push({ path: req.url ?? '', type: req.headers['content-type'] ?? '', body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
        received();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    stops.push(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const { port } = server.address() as AddressInfo;
    const { t } = tracing({ onSpans: undefined, otlpUrl: `http://127.0.0.1:${port}/v1/traces` });
    const call = t.startCallSpan('tool.call', TRACEPARENT, { 'tool.name': 'bash' });
    call.child('execute').end('ok');
    call.end('ok');
    await t.forceFlush();
    await got;

    expect(bodies[0]).toMatchObject({ path: '/v1/traces', type: 'application/json' });
    const body = bodies[0]!.body as { resourceSpans: { resource: { attributes: { key: string; value: { stringValue?: string } }[] }; scopeSpans: { spans: { traceId: string; parentSpanId?: string; name: string }[] }[] }[] };
    const rs = body.resourceSpans[0]!;
    expect(rs.resource.attributes).toContainEqual({ key: 'service.name', value: { stringValue: 'sandbox-runner-test' } });
    const exported = rs.scopeSpans.flatMap((s) => s.spans);
    expect(exported.map((s) => s.name).sort()).toEqual(['execute', 'tool.call']);
    expect(exported.find((s) => s.name === 'tool.call')).toMatchObject({ traceId: CP_TRACE, parentSpanId: CP_SPAN });
  });
});
