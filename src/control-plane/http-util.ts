import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';
import { describeIssues } from '../protocol/index.js';

/** An HTTP error the API answers with `{error: {code, message}}`. */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: ServerResponse, err: HttpError): void {
  sendJson(res, err.status, { error: { code: err.code, message: err.message } });
}

// Tool inputs carry code and files (a files-tool upload is base64 tar), so the
// limit is generous; beyond it the body is refused with 413 before it is buffered.
const MAX_BODY = 96 * 1024 * 1024;

/** Reads and parses a JSON body, then checks it against `schema` (400 naming the field). */
export async function readBody<S extends z.ZodType>(req: IncomingMessage, schema: S): Promise<z.infer<S>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, 'payload_too_large', `the body is over ${MAX_BODY} bytes; send less`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  let raw: unknown;
  try {
    raw = text.trim() === '' ? {} : JSON.parse(text);
  } catch {
    throw new HttpError(400, 'bad_json', 'the body is not valid JSON; send a JSON object with content-type application/json');
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new HttpError(400, 'invalid_request', describeIssues(parsed.error));
  return parsed.data as z.infer<S>;
}

/** Checks `Authorization: Bearer <admin token>` in constant time; throws 401 otherwise. */
export function requireAdmin(req: IncomingMessage, adminTokenDigest: Buffer): void {
  const header = req.headers.authorization ?? '';
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) {
    throw new HttpError(401, 'unauthorized', 'send the admin token as "Authorization: Bearer <token>" (it is in the data dir, file admin-token)');
  }
  // Hashing first makes both sides the same length, so the compare leaks neither length nor content.
  const given = createHash('sha256').update(match[1]!, 'utf8').digest();
  if (!timingSafeEqual(given, adminTokenDigest)) {
    throw new HttpError(401, 'unauthorized', 'the admin token is wrong; read it again from the data dir, file admin-token');
  }
}
