import type { IncomingMessage, ServerResponse } from 'node:http';

/** An error the fake answers with Anthropic's envelope `{type:"error", error:{type, message, details?}}`. */
export class FakeHttpError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'request-id': `req_${Date.now()}` });
  res.end(text);
}

export function sendError(res: ServerResponse, err: FakeHttpError): void {
  sendJson(res, err.status, {
    type: 'error',
    error: { type: err.type, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) },
  });
}

export async function readBody(req: IncomingMessage, limit = 8 * 1024 * 1024): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new FakeHttpError(413, 'request_too_large', 'request body too large');
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new FakeHttpError(400, 'invalid_request_error', 'request body is not valid JSON');
  }
}

export const badRequest = (message: string): FakeHttpError => new FakeHttpError(400, 'invalid_request_error', message);
export const notFound = (message: string): FakeHttpError => new FakeHttpError(404, 'not_found_error', message);

export function now(): string {
  return new Date().toISOString();
}
