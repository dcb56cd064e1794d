/**
 * The isolate host: a child process that runs JavaScript in isolated-vm
 * isolates for the daemon. It exists so that a crash or a runaway inside V8
 * cannot take the daemon down (isolated-vm's own advice); the daemon's
 * IsolatePool watches it from outside and restarts it.
 *
 * Runs as its own process: imports nothing from the daemon but message types.
 */
import ivm from 'isolated-vm';
import type { EvaluateDone, HostEvent, HostRequest } from './isolate-messages.js';

// Defines console and a value formatter inside each fresh context. Runs before
// the user's code; the user's code cannot reach the host's `__log` beyond calling it.
const BOOTSTRAP = `
(() => {
  const log = globalThis.__log;
  delete globalThis.__log;
  const fmt = (v, indent = 2) => {
    if (typeof v === 'string') return v;
    if (v === undefined) return 'undefined';
    if (typeof v === 'bigint') return v + 'n';
    if (typeof v === 'function') return '[Function ' + (v.name || 'anonymous') + ']';
    if (typeof v === 'symbol') return v.toString();
    if (v instanceof Error) return v.stack || (v.name + ': ' + v.message);
    if (typeof v === 'object' && v !== null) {
      try {
        const seen = new WeakSet();
        return JSON.stringify(v, (k, x) => {
          if (typeof x === 'bigint') return x + 'n';
          if (typeof x === 'object' && x !== null) { if (seen.has(x)) return '[Circular]'; seen.add(x); }
          if (x instanceof Map) return Object.fromEntries(x);
          if (x instanceof Set) return Array.from(x);
          return x;
        }, indent) ?? String(v);
      } catch { return String(v); }
    }
    return String(v);
  };
  const line = (args) => args.map((a) => fmt(a, 0)).join(' ') + '\\n';
  globalThis.console = {
    log: (...a) => log('stdout', line(a)),
    info: (...a) => log('stdout', line(a)),
    debug: (...a) => log('stdout', line(a)),
    warn: (...a) => log('stderr', line(a)),
    error: (...a) => log('stderr', line(a)),
  };
  Object.defineProperty(globalThis, '__fmt', { value: fmt, enumerable: false });
  // The text of a plain completion value, or null for a thenable (awaited on the asynchronous path).
  Object.defineProperty(globalThis, '__finish', {
    value: (v) => (v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function' ? null : fmt(v)),
    enumerable: false,
  });
})();
`;

interface Running {
  isolate: ivm.Isolate;
  cancelled: boolean;
}

const running = new Map<number, Running>();

function send(event: HostEvent): void {
  process.send?.(event);
}

/** A fresh isolate with its context and console, not yet used by any call. */
interface Fresh {
  isolate: ivm.Isolate;
  context: ivm.Context;
  /** The context's `__finish`, taken before any user code runs (which cannot swap it then). */
  finish: ivm.Reference<(v: unknown) => string | null>;
  /** The call whose console output this isolate's console writes to. */
  sink: { id: number };
}

// Synchronous steps: making an isolate is about a millisecond of work, and
// each asynchronous step would add a hop to the isolate's thread and back.
async function makeFresh(memoryMb: number): Promise<Fresh> {
  const isolate = new ivm.Isolate({ memoryLimit: memoryMb });
  try {
    const context = isolate.createContextSync();
    const sink = { id: -1 };
    context.global.setSync(
      '__log',
      new ivm.Callback((stream: 'stdout' | 'stderr', data: string) => {
        if (sink.id >= 0) send({ kind: 'output', id: sink.id, stream, data: String(data) });
      }),
    );
    context.evalSync(BOOTSTRAP, { timeout: 1000 });
    const finish = context.global.getSync('__finish', { reference: true }) as ivm.Reference<(v: unknown) => string | null>;
    return { isolate, context, sink, finish };
  } catch (err) {
    isolate.dispose();
    throw err;
  }
}

// One spare per memory size, made while the previous call runs: every call
// still gets an isolate no code has run in, without paying the ~3 ms to make
// it on its own path. Bounded: a few memory sizes at most are ever asked for.
const spares = new Map<number, Promise<Fresh>>();
const MAX_SPARES = 4;

function takeFresh(memoryMb: number): Promise<Fresh> {
  const spare = spares.get(memoryMb);
  spares.delete(memoryMb);
  return spare ?? makeFresh(memoryMb);
}

/** Makes the next spare once the call's answer is out, so making it never slows a call down. */
function refill(memoryMb: number): void {
  setImmediate(() => {
    if (spares.has(memoryMb) || spares.size >= MAX_SPARES) return;
    const next = makeFresh(memoryMb);
    next.catch(() => spares.delete(memoryMb));
    spares.set(memoryMb, next);
  });
}

async function evaluate(req: Extract<HostRequest, { kind: 'evaluate' }>): Promise<EvaluateDone> {
  const fresh = await takeFresh(req.memoryMb);
  const { isolate, context } = fresh;
  fresh.sink.id = req.id;
  const entry: Running = { isolate, cancelled: false };
  running.set(req.id, entry);
  const started = Date.now();
  // isolated-vm's `timeout` bounds running code, not time spent waiting on a
  // promise: this timer disposes the isolate so a never-settling promise ends too.
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (!isolate.isDisposed) isolate.dispose();
  }, req.timeoutMs);
  try {
    // Compiling and setting a global are cheap and run inline; the code itself runs off this thread.
    const script = isolate.compileScriptSync(req.code, { filename: 'file:///input.js' });
    const completion = await script.run(context, { timeout: req.timeoutMs, reference: true });
    const remaining = Math.max(1, req.timeoutMs - (Date.now() - started));
    // Most results are plain values: formatted in one synchronous call of a
    // function compiled with the context (bounded by the same timeout), which
    // spares a round trip to the isolate's thread and a compile per call. Only
    // a thenable needs the asynchronous path below, to await it.
    const plain = fresh.finish.applySync(undefined, [completion.derefInto()], { timeout: remaining, result: { copy: true } }) as string | null;
    if (plain !== null) {
      completion.release();
      return { kind: 'done', id: req.id, outcome: 'completed', value: String(plain) };
    }
    context.global.setSync('__result', completion.derefInto());
    completion.release();
    const text = await context.eval(
      `(async () => { let v = globalThis.__result; delete globalThis.__result;
         if (v !== null && typeof v === 'object' && typeof v.then === 'function') v = await v;
         return globalThis.__fmt(v); })()`,
      { timeout: remaining, promise: true, copy: true },
    );
    return { kind: 'done', id: req.id, outcome: 'completed', value: String(text) };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (entry.cancelled) return { kind: 'done', id: req.id, outcome: 'cancelled', error: 'cancelled' };
    if (timedOut || /timed out/i.test(message)) {
      return { kind: 'done', id: req.id, outcome: 'timed_out', error: `JavaScript ran longer than ${req.timeoutMs} ms` };
    }
    if (/memory limit/i.test(message)) {
      return {
        kind: 'done',
        id: req.id,
        outcome: 'memory',
        error: `JavaScript ran out of memory (limit ${req.memoryMb} MB)`,
      };
    }
    const stack = err instanceof Error && err.stack ? err.stack : message;
    return { kind: 'done', id: req.id, outcome: 'threw', error: `Uncaught ${stack}` };
  } finally {
    clearTimeout(timer);
    running.delete(req.id);
    fresh.sink.id = -1;
    // Disposed after the answer is sent, off the call's path.
    setImmediate(() => {
      if (!isolate.isDisposed) isolate.dispose();
    });
  }
}

process.on('message', (msg: HostRequest) => {
  if (msg.kind === 'evaluate') {
    void evaluate(msg)
      .then(send, (err: unknown) => send({ kind: 'done', id: msg.id, outcome: 'threw', error: String(err) }))
      .finally(() => refill(msg.memoryMb));
  } else if (msg.kind === 'cancel') {
    const entry = running.get(msg.id);
    if (entry && !entry.isolate.isDisposed) {
      entry.cancelled = true;
      entry.isolate.dispose();
    }
  }
});
// The daemon going away must take the host with it. Terminal signals reach the
// whole process group; the daemon decides when its host stops, not the terminal.
process.on('disconnect', () => process.exit(0));
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => undefined);
send({ kind: 'ready' });
