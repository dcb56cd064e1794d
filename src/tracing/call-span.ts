import { SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api';

/**
 * One span of a call and the context to parent its children on. There is no
 * global context manager (the daemon registers nothing globally), so the parent
 * travels explicitly: `call.child('sandbox.create')`.
 */
export class CallSpan {
  readonly context: Context;

  constructor(
    private readonly tracer: Tracer,
    readonly span: Span,
    parentContext: Context,
  ) {
    this.context = trace.setSpan(parentContext, span);
  }

  /** 32 hex digits; the control plane files the call's trace under it. */
  get traceId(): string {
    return this.span.spanContext().traceId;
  }

  get spanId(): string {
    return this.span.spanContext().spanId;
  }

  /** Starts a child span; end it with `end()` or use `run()`. */
  child(name: string, attributes?: Attributes): CallSpan {
    const span = this.tracer.startSpan(name, { kind: SpanKind.INTERNAL, ...(attributes ? { attributes } : {}) }, this.context);
    return new CallSpan(this.tracer, span, this.context);
  }

  /**
   * Runs `fn` inside a child span that ends when `fn` settles: status ok on
   * success, error with the exception recorded when it throws (and rethrows).
   */
  async run<T>(name: string, fn: (span: CallSpan) => Promise<T> | T, attributes?: Attributes): Promise<T> {
    const child = this.child(name, attributes);
    try {
      const result = await fn(child);
      child.end('ok');
      return result;
    } catch (err) {
      child.fail(err);
      child.end();
      throw err;
    }
  }

  setAttributes(attributes: Attributes): this {
    this.span.setAttributes(attributes);
    return this;
  }

  /** Marks the span failed with the error's message (redacted at export) and records it. */
  fail(err: unknown): this {
    const message = err instanceof Error ? err.message : String(err);
    this.span.setStatus({ code: SpanStatusCode.ERROR, message });
    this.span.recordException(err instanceof Error ? err : message);
    return this;
  }

  /** Ends the span, optionally setting its status first. Ending twice is ignored by the SDK. */
  end(status?: 'ok' | 'error'): void {
    if (status === 'ok') this.span.setStatus({ code: SpanStatusCode.OK });
    if (status === 'error') this.span.setStatus({ code: SpanStatusCode.ERROR });
    this.span.end();
  }
}
