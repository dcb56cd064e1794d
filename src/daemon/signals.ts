import type { Logger } from '../util/logger.js';

export interface SignalTargets {
  /** SIGTERM / SIGINT: drain and stop. */
  shutdown(reason: string): Promise<void>;
  /** SIGHUP: reload policy and config that can change live. */
  reload?(): Promise<void>;
  logger: Logger;
}

/**
 * The one place that listens to process signals. A second SIGINT/SIGTERM
 * while draining stops waiting for calls (they are cancelled at once).
 * Returns a function that removes the listeners.
 */
export function installSignalHandlers(targets: SignalTargets & { force(): void }): () => void {
  let stopping = false;
  const onStop = (signal: NodeJS.Signals) => {
    if (stopping) {
      targets.logger.warn({ signal }, 'second stop signal: cancelling running calls now');
      targets.force();
      return;
    }
    stopping = true;
    void targets.shutdown(`${signal} received`);
  };
  const onHup = () => {
    if (!targets.reload) return;
    targets.reload().catch((err: unknown) => targets.logger.error({ err: String(err) }, 'reload failed; the previous policy stays in force'));
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  process.on('SIGHUP', onHup);
  return () => {
    process.off('SIGTERM', onStop);
    process.off('SIGINT', onStop);
    process.off('SIGHUP', onHup);
  };
}
