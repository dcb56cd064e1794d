import type { Logger } from '../util/logger.js';
import type { MessageSigner } from './runner-connection.js';

/** Options of `ControlPlane.create`. */
export interface ControlPlaneOptions {
  /** Where the HTTP API and the runners' WebSocket listen; port 0 picks a free port. */
  listen: { host: string; port: number };
  /** State directory (0700): admin token, signing key, runners, calls, traces, audit checkpoints. */
  dataDir: string;
  /** Default: no logging. */
  logger?: Logger;
  /** Milliseconds since the epoch; default `Date.now`. Drives token expiry and timestamps. */
  clock?: () => number;
  /** Ping interval to runners, also told to them in `welcome`; a missed pong drops the socket. Default 15000. */
  heartbeatMs?: number;
  /** Lifetime of a pairing token when the request names none. Default 15 minutes. */
  pairingTokenTtlMs?: number;
  /**
   * Applied to every message that makes a runner act (tool.call, tool.cancel,
   * session.*) just before it is sent, once per send (so a redelivery is signed
   * afresh). Default: the message unchanged. Issue 4 plugs the Ed25519 signer here.
   */
  signMessage?: MessageSigner;
  /** How long a session request waits for the runner's answer. Default 120000. */
  sessionReplyTimeoutMs?: number;
  /** Bytes of events an SSE client may leave unread before it gets `lagged` and is let go. Default 64 MiB. */
  sseMaxBufferedBytes?: number;
}

export const DEFAULT_HEARTBEAT_MS = 15_000;
export const DEFAULT_PAIRING_TOKEN_TTL_MS = 15 * 60_000;
