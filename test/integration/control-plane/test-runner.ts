import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import sodium from 'libsodium-wrappers';
import WebSocket from 'ws';
import {
  RunnerMessageSchema,
  parseControlMessage,
  type ControlMessage,
  type MessageOf,
  type RunnerMessage,
} from '../../../src/protocol/index.js';
import { ControlPlane } from '../../../src/control-plane/index.js';
import type { ControlPlaneOptions } from '../../../src/control-plane/index.js';

/** A started control plane in a fresh temporary data dir, with an authorised fetch. */
export interface TestControlPlane {
  cp: ControlPlane;
  dataDir: string;
  api(path: string, init?: RequestInit & { json?: unknown }): Promise<Response>;
  /** Stops it and removes the data dir. */
  dispose(): Promise<void>;
}

export async function startControlPlane(extra: Partial<ControlPlaneOptions> = {}, dataDir?: string): Promise<TestControlPlane> {
  const dir = dataDir ?? (await mkdtemp(join(tmpdir(), 'cp-test-')));
  const cp = ControlPlane.create({ listen: { host: '127.0.0.1', port: 0 }, dataDir: dir, ...extra });
  await cp.start();
  return {
    cp,
    dataDir: dir,
    api: (path, init = {}) => apiFetch(cp, path, init),
    dispose: async () => {
      await cp.stop();
      if (!dataDir) await rm(dir, { recursive: true, force: true });
    },
  };
}

export function apiFetch(cp: ControlPlane, path: string, init: RequestInit & { json?: unknown } = {}): Promise<Response> {
  const { json, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (!headers.has('authorization')) headers.set('authorization', `Bearer ${cp.adminToken}`);
  if (json !== undefined) headers.set('content-type', 'application/json');
  return fetch(`${cp.url}${path}`, { ...rest, headers, ...(json !== undefined ? { body: JSON.stringify(json) } : {}) });
}

/** Keys a runner makes locally at pairing. */
export interface RunnerKeys {
  signPublic: Uint8Array;
  signSecret: Uint8Array;
  boxPublic: Uint8Array;
}

export async function makeKeys(): Promise<RunnerKeys> {
  await sodium.ready;
  const sign = sodium.crypto_sign_keypair();
  const box = sodium.crypto_box_keypair();
  return { signPublic: sign.publicKey, signSecret: sign.privateKey, boxPublic: box.publicKey };
}

export interface Paired {
  runnerId: string;
  keys: RunnerKeys;
  wsUrl: string;
  controlPlaneSigningKey: string;
}

/** Pairs a runner through the real HTTP API. */
export async function pair(cp: ControlPlane, name = 'test-runner', labels: Record<string, string> = {}): Promise<Paired> {
  const tokenRes = await apiFetch(cp, '/v1/pairing-tokens', { method: 'POST', json: {} });
  const { token } = (await tokenRes.json()) as { token: string };
  const keys = await makeKeys();
  const res = await fetch(`${cp.url}/v1/pair`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(pairBody(token, keys, name, labels)),
  });
  if (res.status !== 201) throw new Error(`pairing failed: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { runnerId: string; wsUrl: string; controlPlaneSigningKey: string };
  return { ...body, keys };
}

export function pairBody(token: string, keys: RunnerKeys, name = 'test-runner', labels: Record<string, string> = {}) {
  return {
    token,
    name,
    labels,
    signingPublicKey: Buffer.from(keys.signPublic).toString('base64'),
    boxPublicKey: Buffer.from(keys.boxPublic).toString('base64'),
    version: '0.1.0-test',
  };
}

export const DEFAULT_CAPABILITIES = { tools: ['javascript', 'bash', 'exec'], drivers: ['isolate' as const], maxConcurrentCalls: 4 };

/**
 * A test playing the runner over a real WebSocket, speaking the protocol
 * through the shared schemas. Every frame it receives is kept in order.
 */
export class TestRunner {
  readonly ws: WebSocket;
  readonly received: ControlMessage[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: Array<{ match: (m: ControlMessage) => boolean; resolve: (m: ControlMessage) => void }> = [];

  private constructor(ws: WebSocket) {
    this.ws = ws;
    this.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const parsed = parseControlMessage((data as Buffer).toString('utf8'));
      if (!parsed.ok) throw new Error(`control plane sent a bad frame: ${parsed.message}`);
      this.received.push(parsed.message);
      this.#wake();
    });
  }

  /** Opens the socket and returns once it is open (hello not yet consumed). */
  static async open(wsUrl: string, options: WebSocket.ClientOptions = {}): Promise<TestRunner> {
    const ws = new WebSocket(wsUrl, options);
    const runner = new TestRunner(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return runner;
  }

  /** Opens, answers the challenge with `keys` and waits for `welcome`. */
  static async connect(
    p: Paired,
    capabilities = DEFAULT_CAPABILITIES,
    options: WebSocket.ClientOptions = {},
  ): Promise<{ runner: TestRunner; welcome: MessageOf<ControlMessage, 'welcome'> }> {
    const runner = await TestRunner.open(p.wsUrl, options);
    const hello = await runner.next('hello');
    runner.send({
      v: 1,
      id: msgId(),
      type: 'auth',
      runnerId: p.runnerId,
      signature: signChallenge(p.keys.signSecret, p.runnerId, hello.challenge),
      version: '0.1.0-test',
      capabilities,
    });
    const welcome = await runner.next('welcome');
    return { runner, welcome };
  }

  #wake(): void {
    for (const w of [...this.#waiters]) {
      const idx = this.received.findIndex((m) => w.match(m));
      if (idx >= 0) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        const [m] = this.received.splice(idx, 1);
        w.resolve(m!);
      }
    }
  }

  /** The next received message of `type` (and matching `where`), waiting for it if needed; it is consumed. */
  next<T extends ControlMessage['type']>(type: T, where: (m: MessageOf<ControlMessage, T>) => boolean = () => true): Promise<MessageOf<ControlMessage, T>> {
    return new Promise((resolve) => {
      this.#waiters.push({
        match: (m) => m.type === type && where(m as MessageOf<ControlMessage, T>),
        resolve: resolve as (m: ControlMessage) => void,
      });
      this.#wake();
    });
  }

  /** Messages of `type` received and not consumed yet. */
  pending(type: ControlMessage['type']): ControlMessage[] {
    return this.received.filter((m) => m.type === type);
  }

  /** Sends a runner message, checked against the protocol schema first. */
  send(msg: RunnerMessage): void {
    this.ws.send(JSON.stringify(RunnerMessageSchema.parse(msg)));
  }

  sendRaw(data: string | Buffer): void {
    this.ws.send(data);
  }

  async close(): Promise<void> {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.close();
    await this.closed;
  }
}

export function msgId(): string {
  return `m_${randomBytes(8).toString('hex')}`;
}

export function signChallenge(secret: Uint8Array, runnerId: string, challenge: string): string {
  const sig = sodium.crypto_sign_detached(`sandbox-runner-auth:v1:${runnerId}:${challenge}`, secret);
  return Buffer.from(sig).toString('base64');
}

/** A tool.result message for `callId`. */
export function resultFor(callId: string, text: string, status: 'completed' | 'failed' | 'cancelled' | 'timed_out' = 'completed'): RunnerMessage {
  return {
    v: 1,
    id: msgId(),
    type: 'tool.result',
    callId,
    status,
    result: { type: 'tool_result', tool_use_id: callId, content: text, is_error: status !== 'completed' },
    durationMs: 3,
  };
}

/** Reads Server-Sent Events from a fetch response until the stream ends. */
export async function* readEvents(res: Response): AsyncGenerator<{ event: string; data: unknown }> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (data.length > 0) yield { event, data: JSON.parse(data.join('\n')) };
    }
  }
}
