import { ROOT_CONTEXT, SpanKind, SpanStatusCode, defaultTextMapSetter, trace, type Span, type Tracer } from '@opentelemetry/api';
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import { BasicTracerProvider, SimpleSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { Logger } from '../util/logger.js';
import type { StoredSpan, TraceStore } from './trace-store.js';

function nanos(t: [number, number]): string {
  return (BigInt(t[0]) * 1_000_000_000n + BigInt(t[1])).toString();
}

/** Flattens an SDK span into the stored (wire) shape. */
export function toStoredSpan(span: ReadableSpan): StoredSpan {
  const attributes: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(span.attributes)) {
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') attributes[k] = v;
  }
  const ctx = span.spanContext();
  const parent = span.parentSpanContext?.spanId;
  return {
    traceId: ctx.traceId,
    spanId: ctx.spanId,
    ...(parent ? { parentSpanId: parent } : {}),
    name: span.name.slice(0, 200),
    startTimeUnixNano: nanos(span.startTime),
    endTimeUnixNano: nanos(span.endTime),
    status: span.status.code === SpanStatusCode.OK ? 'ok' : span.status.code === SpanStatusCode.ERROR ? 'error' : 'unset',
    attributes,
    source: 'control-plane',
  };
}

/** An OTel exporter that writes finished spans into the control plane's own trace store. */
class StoreExporter implements SpanExporter {
  constructor(
    private readonly store: TraceStore,
    private readonly logger: Logger,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    // Held by the store and written a moment later (it logs a failed write).
    this.store.add(spans.map(toStoredSpan));
    done({ code: ExportResultCode.SUCCESS });
  }

  async shutdown(): Promise<void> {
    await this.store.flush().catch((err: unknown) => this.logger.error({ err }, 'could not store spans; check the data dir is writable'));
  }
}

/** The root span of one tool call and the `traceparent` that carries it to the runner. */
export interface CallSpan {
  span: Span;
  traceId: string;
  traceparent: string;
}

/**
 * The control plane's tracer: a private OTel provider (never the global one,
 * so several control planes can live in one process) exporting into the store.
 */
export class ControlPlaneTracer {
  readonly #provider: BasicTracerProvider;
  readonly #tracer: Tracer;
  readonly #propagator = new W3CTraceContextPropagator();

  constructor(store: TraceStore, logger: Logger) {
    this.#provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(new StoreExporter(store, logger))] });
    this.#tracer = this.#provider.getTracer('sandbox-runner-control-plane');
  }

  /** Starts the root span of a call. */
  startCall(callId: string, runnerId: string, tool: string): CallSpan {
    const span = this.#tracer.startSpan(
      `tool_call ${tool}`,
      { kind: SpanKind.CLIENT, attributes: { 'tool.call_id': callId, 'tool.name': tool, 'runner.id': runnerId } },
      ROOT_CONTEXT,
    );
    const carrier: Record<string, string> = {};
    this.#propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, defaultTextMapSetter);
    return { span, traceId: span.spanContext().traceId, traceparent: carrier.traceparent ?? '' };
  }

  /** Ends a call's span with the call's final status. */
  endCall(span: Span, status: string, isError: boolean): void {
    span.setAttribute('tool.status', status);
    span.setStatus(status === 'completed' && !isError ? { code: SpanStatusCode.OK } : { code: SpanStatusCode.ERROR, message: status });
    span.end();
  }

  /** Resolves once every ended span is in the store (read-your-writes for the traces API). */
  flush(): Promise<void> {
    return this.#provider.forceFlush();
  }

  /** Flushes spans still being stored and stops the provider. */
  shutdown(): Promise<void> {
    return this.#provider.shutdown();
  }
}
