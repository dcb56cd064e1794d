export { CallSpan } from './call-span.js';
export { toSpanRecord } from './span-record.js';
export { createTracing, type Tracing, type TracingOptions } from './tracing.js';
