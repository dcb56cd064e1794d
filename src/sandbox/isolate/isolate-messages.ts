/** Messages between the daemon and its isolate host child process. */
export interface EvaluateRequest {
  kind: 'evaluate';
  id: number;
  code: string;
  timeoutMs: number;
  memoryMb: number;
}

export interface CancelRequest {
  kind: 'cancel';
  id: number;
}

export type HostRequest = EvaluateRequest | CancelRequest;

export interface OutputEvent {
  kind: 'output';
  id: number;
  stream: 'stdout' | 'stderr';
  data: string;
}

export interface EvaluateDone {
  kind: 'done';
  id: number;
  /** completed: `value` holds the result as text; otherwise `error` says why. */
  outcome: 'completed' | 'threw' | 'timed_out' | 'memory' | 'cancelled';
  value?: string;
  error?: string;
}

export interface ReadyEvent {
  kind: 'ready';
}

export type HostEvent = OutputEvent | EvaluateDone | ReadyEvent;
