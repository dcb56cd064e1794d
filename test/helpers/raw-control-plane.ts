import { createServer, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import sodium from 'libsodium-wrappers';
import { WebSocketServer, type WebSocket } from 'ws';
import { signRequest } from '../../src/signing/index.js';

/**
 * A hand-driven control plane for tests that must send what the reference one
 * never would (malformed frames, hostile tool calls). It speaks just enough of
 * the protocol: pairing, hello/auth/welcome; everything after is up to the test.
 */
export class RawControlPlane {
  private server!: Server;
  private wss!: WebSocketServer;
  url!: string;
  socket: WebSocket | undefined;
  readonly received: any[] = [];
  private listeners = new Set<() => void>();
  signingPublicKey?: Uint8Array;
  readonly keys = { publicKey: new Uint8Array(), privateKey: new Uint8Array() };

  static async start(): Promise<RawControlPlane> {
    await sodium.ready;
    const cp = new RawControlPlane();
    Object.assign(cp.keys, sodium.crypto_sign_keypair());
    cp.server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        if (req.url === '/v1/pair') {
          const b = JSON.parse(body);
          cp.signingPublicKey = new Uint8Array(Buffer.from(b.signingPublicKey, 'base64'));
          res.writeHead(201, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ runnerId: 'rnr_raw', controlPlaneSigningKey: Buffer.from(cp.keys.publicKey).toString('base64') }));
        } else {
          res.writeHead(404).end();
        }
      });
    });
    cp.wss = new WebSocketServer({ server: cp.server, path: '/v1/connect' });
    cp.wss.on('connection', (ws) => {
      const challenge = randomBytes(32).toString('base64');
      ws.on('message', (data, binary) => {
        if (binary) {
          cp.received.push({ binary: true, data });
        } else {
          const msg = JSON.parse(data.toString());
          if (msg.type === 'auth') {
            const ok = sodium.crypto_sign_verify_detached(
              new Uint8Array(Buffer.from(msg.signature, 'base64')),
              `sandbox-runner-auth:v1:${msg.runnerId}:${challenge}`,
              cp.signingPublicKey!,
            );
            if (!ok) return ws.close(4401, 'bad signature');
            cp.socket = ws;
            ws.send(JSON.stringify({ v: 1, id: 'w1', type: 'welcome', runnerId: msg.runnerId, heartbeatMs: 15000, known: [] }));
          }
          cp.received.push(msg);
        }
        for (const l of cp.listeners) l();
      });
      ws.send(JSON.stringify({ v: 1, id: 'h1', type: 'hello', challenge, serverTime: Date.now() }));
    });
    await new Promise<void>((r) => cp.server.listen(0, '127.0.0.1', r));
    cp.url = `http://127.0.0.1:${(cp.server.address() as { port: number }).port}`;
    return cp;
  }

  /** Resolves with the first received message matching `pred` (already received or future). */
  waitFor(pred: (m: any) => boolean, timeoutMs = 20_000): Promise<any> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = this.received.find(pred);
        if (m) {
          this.listeners.delete(check);
          clearTimeout(t);
          resolve(m);
        }
      };
      const t = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`no matching message; received: ${JSON.stringify(this.received.filter((m) => !m.binary)).slice(0, 2000)}`));
      }, timeoutMs);
      this.listeners.add(check);
      check();
    });
  }

  /** Sends a message signed as the reference control plane signs (the key given at pairing). */
  async sendSigned(message: Record<string, unknown>, runnerId = 'rnr_raw'): Promise<void> {
    this.socket!.send(JSON.stringify(await signRequest(message, { secretKey: this.keys.privateKey, runnerId })));
  }

  sendRaw(data: string | Buffer): void {
    this.socket!.send(data);
  }

  async stop(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    this.wss.close();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
