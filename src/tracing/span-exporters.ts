import type { Attributes } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, Span, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { SpanRecord } from '../protocol/messages.js';
import type { Logger } from '../util/logger.js';
import { toSpanRecord } from './span-record.js';

/**
 * Hands finished spans, as SpanRecords, to a callback: the daemon sends them
 * to the control plane over its connection (the `span` message).
 */
export class CallbackSpanExporter implements SpanExporter {
  constructor(
    private readonly onSpans: (spans: SpanRecord[]) => void,
    private readonly logger: Logger,
  ) {}

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    try {
      this.onSpans(spans.map(toSpanRecord));
      resultCallback({ code: ExportResultCode.SUCCESS });
    } catch (err) {
      this.logger.warn({ err }, 'span consumer failed; dropping the batch');
      resultCallback({ code: ExportResultCode.FAILED, error: err instanceof Error ? err : new Error(String(err)) });
    }
  }

  async shutdown(): Promise<void> {}

  async forceFlush(): Promise<void> {}
}

/**
 * Passes every string a span carries through `redact` while the span can still
 * change (onEnding runs inside span.end(), before it is frozen), so that no
 * exporter, ours or OTLP, ever sees a secret.
 */
export class RedactingSpanProcessor implements SpanProcessor {
  constructor(private readonly redact: (s: string) => string) {}

  onStart(): void {}

  onEnding(span: Span): void {
    span.updateName(this.redact(span.name));
    for (const [key, value] of Object.entries(span.attributes)) {
      const clean = this.clean(value);
      if (clean !== value && clean !== undefined) span.setAttribute(key, clean);
    }
    if (span.status.message) span.setStatus({ ...span.status, message: this.redact(span.status.message) });
    // Event attributes (recorded exceptions) have no setter; the objects are still ours to change.
    for (const event of span.events) {
      const attrs = event.attributes as Attributes | undefined;
      if (!attrs) continue;
      for (const [key, value] of Object.entries(attrs)) attrs[key] = this.clean(value);
    }
  }

  onEnd(): void {}

  async shutdown(): Promise<void> {}

  async forceFlush(): Promise<void> {}

  private clean<T>(value: T): T {
    if (typeof value === 'string') return this.redact(value) as T;
    if (Array.isArray(value)) return value.map((v: unknown) => (typeof v === 'string' ? this.redact(v) : v)) as T;
    return value;
  }
}
