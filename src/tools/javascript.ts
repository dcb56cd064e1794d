import { JavascriptInputSchema } from '../protocol/index.js';
import type { z } from 'zod';
import type { ToolDefinition, ToolOutcome } from './tool.js';

type JavascriptInput = z.infer<typeof JavascriptInputSchema>;

/**
 * `javascript`: runs code in a fresh V8 isolate (no I/O, no `process`, no
 * `require`); console output is streamed and kept; the result is the value of
 * the last expression, awaited when it is a promise, as text.
 */
export const javascriptTool: ToolDefinition<JavascriptInput> = {
  name: 'javascript',
  inputSchema: JavascriptInputSchema,
  sandbox: 'isolate',
  async run(input, ctx): Promise<ToolOutcome> {
    const logs: string[] = [];
    let logBytes = 0;
    let dropped = 0;
    const cap = 1024 * 1024;
    const result = await ctx.isolates.evaluate({
      code: input.code,
      timeoutMs: Math.min(input.timeoutMs ?? ctx.timeoutMs, ctx.timeoutMs),
      signal: ctx.signal,
      onOutput: (stream, data) => {
        if (logBytes + data.length > cap) {
          dropped += data.length;
          return;
        }
        logBytes += data.length;
        logs.push(data);
        void ctx.emit(stream, Buffer.from(data));
      },
    });
    let console = logs.join('');
    if (dropped > 0) console += `\n[console output truncated: ${dropped} characters dropped]\n`;
    switch (result.outcome) {
      case 'completed':
        return {
          status: 'completed',
          isError: false,
          content: console
            ? [
                { type: 'text', text: console },
                { type: 'text', text: result.value ?? '' },
              ]
            : (result.value ?? ''),
        };
      case 'timed_out':
        return { status: 'timed_out', isError: true, content: withConsole(console, `${result.error}; make the code finish sooner or raise timeoutMs`) };
      case 'cancelled':
        return { status: 'cancelled', isError: true, content: withConsole(console, 'the call was cancelled') };
      case 'memory':
        return { status: 'failed', isError: true, content: withConsole(console, `${result.error}; use less memory`) };
      default:
        return { status: 'failed', isError: true, content: withConsole(console, result.error ?? 'the code failed') };
    }
  },
};

function withConsole(console: string, message: string): string {
  return console ? `${console}${console.endsWith('\n') ? '' : '\n'}${message}` : message;
}
