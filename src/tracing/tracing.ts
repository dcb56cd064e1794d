import { ROOT_CONTEXT, SpanKind, defaultTextMapGetter, type Attributes, type Tracer } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { SpanRecord } from '../protocol/messages.js';
import { noopLogger, type Logger } from '../util/logger.js';
import { CallSpan } from './call-span.js';
import { CallbackSpanExporter, RedactingSpanProcessor } from './span-exporters.js';

export interface TracingOptions {
  /** `service.name` of every span, e.g. "sandbox-runner". */
  serviceName: string;
  /** Extra resource attributes, e.g. `{ 'sandbox_runner.id': runnerId }`. */
  resource?: Attributes;
  /** Receives finished spans in batches of at most 512 (the daemon sends them to the control plane). */
  onSpans?: (spans: SpanRecord[]) => void;
  /** An OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces. */
  otlpUrl?: string;
  /** Masks secrets in span names, attributes, status messages and exception events. */
  redact?: (s: string) => string;
  /** How long finished spans wait to be batched. Default 500 ms. */
  batchDelayMs?: number;
  logger?: Logger;
}

/** A tracer of one daemon and the calls it serves. */
export interface Tracing {
  /** The OpenTelemetry tracer, for spans outside a call. */
  tracer: Tracer;
  /**
   * Starts the root span of a call, a child of the control plane's span when
   * `traceparent` (W3C) is given and valid, else the root of a new trace.
   */
  startCallSpan(name: string, traceparent?: string, attributes?: Attributes): CallSpan;
  /** Exports every finished span now. */
  forceFlush(): Promise<void>;
  /** Flushes and stops; later spans are dropped. */
  shutdown(): Promise<void>;
}

/**
 * Creates a tracer provider that belongs to the caller: nothing is registered
 * globally (no global provider, propagator or context manager), so several
 * daemons in one process keep their spans apart.
 */
export function createTracing(options: TracingOptions): Tracing {
  const logger = options.logger ?? noopLogger;
  const processors: SpanProcessor[] = [];
  // Redaction runs first, while spans are still writable, so that no exporter sees a secret.
  if (options.redact) processors.push(new RedactingSpanProcessor(options.redact));
  const batch = { scheduledDelayMillis: options.batchDelayMs ?? 500, maxExportBatchSize: 512, maxQueueSize: 4096 };
  if (options.onSpans) processors.push(new BatchSpanProcessor(new CallbackSpanExporter(options.onSpans, logger), batch));
  if (options.otlpUrl) processors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: options.otlpUrl }), batch));
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': options.serviceName, ...options.resource }),
    spanProcessors: processors,
  });
  const tracer = provider.getTracer('sandbox-runner');
  const propagator = new W3CTraceContextPropagator();
  let stopped = false;

  return {
    tracer,
    startCallSpan(name, traceparent, attributes) {
      const parent = traceparent ? propagator.extract(ROOT_CONTEXT, { traceparent }, defaultTextMapGetter) : ROOT_CONTEXT;
      const span = tracer.startSpan(name, { kind: SpanKind.SERVER, ...(attributes ? { attributes } : {}) }, parent);
      return new CallSpan(tracer, span, parent);
    },
    async forceFlush() {
      await provider.forceFlush();
    },
    async shutdown() {
      if (stopped) return;
      stopped = true;
      await provider.shutdown();
    },
  };
}
