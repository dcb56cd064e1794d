import Anthropic from '@anthropic-ai/sdk';

/** Options for {@link createWorkerClient}. */
export interface WorkerClientOptions {
  baseUrl: string;
  /** The environment key or a sessions token. Sent only as `Authorization: Bearer`. */
  credential: string;
  /** Which helper issues the calls (x-stainless-helper telemetry header). */
  helper: 'environments-work-poller' | 'environments-worker' | 'session-tool-runner';
  /** Per-request timeout; the SSE stream is exempt (it is cut by its AbortSignal). */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/**
 * An SDK client authenticated with one worker credential as a Bearer token and
 * no `X-Api-Key` (the worker routes reject it). Built with `apiKey: null` so
 * the SDK never picks `ANTHROPIC_API_KEY` up from the environment, and with
 * `maxRetries: 0` because every caller here owns its retry policy (the lease
 * TTL bounds it; the SDK's own retries would hide a 409 on stop or a 412).
 */
export function createWorkerClient(options: WorkerClientOptions): Anthropic {
  return new Anthropic({
    apiKey: null,
    authToken: options.credential,
    baseURL: options.baseUrl,
    maxRetries: 0,
    timeout: options.timeoutMs ?? 60_000,
    defaultHeaders: { 'x-stainless-helper': options.helper },
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
}

/** HTTP status of an SDK error, or undefined for network errors and others. */
export function apiStatus(err: unknown): number | undefined {
  if (err instanceof Anthropic.APIError && typeof err.status === 'number') return err.status;
  return undefined;
}

/** A 4xx the SDKs never retry: everything but 408, 409 and 429. */
export function isFatal4xx(err: unknown): boolean {
  const s = apiStatus(err);
  return s !== undefined && s >= 400 && s < 500 && s !== 408 && s !== 409 && s !== 429;
}

/** Worth retrying while the lease lives: network errors, 5xx, 408, 409, 429. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof Anthropic.APIUserAbortError) return false;
  const s = apiStatus(err);
  return s === undefined || s >= 500 || s === 408 || s === 409 || s === 429;
}
