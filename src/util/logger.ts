import pino, { type Logger } from 'pino';

export type { Logger };

/** A logger that drops everything: the default where a caller passes none. */
export const noopLogger: Logger = pino({ level: 'silent' });

export interface LoggerOptions {
  level?: string;
  /** Component name, shown on every line. */
  name?: string;
  /** Human-readable output (pino-pretty); defaults to whether stderr/stdout is a TTY. */
  pretty?: boolean;
  /** Where lines go: 1 = stdout (daemon), 2 = stderr (CLI commands). */
  fd?: 1 | 2;
  /** Masks secrets in each line before it is written (the redactor, issue 4). */
  redact?: (line: string) => string;
}

/**
 * Creates the process logger: pino JSON lines, or pino-pretty when a person is
 * watching a terminal. Every line passes through `redact` when one is given.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const fd = options.fd ?? 1;
  const stream = fd === 1 ? process.stdout : process.stderr;
  const pretty = options.pretty ?? Boolean(stream.isTTY);
  const base = { level: options.level ?? 'info', name: options.name ?? 'sandbox-runner' };
  const redact = options.redact;
  if (pretty) {
    // pino-pretty as a synchronous stream in-process: no worker thread to leak.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return pino(base, createPrettyStream(fd, redact));
  }
  const dest = pino.destination({ fd, sync: true });
  if (!redact) return pino(base, dest);
  return pino(base, { write: (line: string) => dest.write(redact(line)) });
}

function createPrettyStream(fd: 1 | 2, redact?: (line: string) => string): pino.DestinationStream {
  // Imported lazily: pino-pretty is only loaded when a terminal is attached.
  const prettyFactory = loadPretty();
  const out = fd === 1 ? process.stdout : process.stderr;
  return {
    write(line: string) {
      const safe = redact ? redact(line) : line;
      out.write(prettyFactory(safe));
    },
  };
}

import { createRequire } from 'node:module';
function loadPretty(): (line: string) => string {
  const require = createRequire(import.meta.url);
  const { prettyFactory } = require('pino-pretty') as {
    prettyFactory: (opts: Record<string, unknown>) => (line: string) => string;
  };
  return prettyFactory({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
}
