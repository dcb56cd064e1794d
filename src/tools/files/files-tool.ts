import type { z } from 'zod';
import { FilesInputSchema } from '../../protocol/tool-inputs.js';
import { RunnerError } from '../../util/errors.js';
import { textOutcome, type ToolDefinition } from '../tool.js';
import { failureOutcome, WorkspaceFs } from '../workspace-path.js';
import { packDownload } from './tar-download.js';
import { applyUpload, planUpload } from './tar-upload.js';

export type FilesInput = z.infer<typeof FilesInputSchema>;

export interface FilesToolOptions {
  /** Bytes an upload may unpack to, and a download may hold; default 64 MiB (never above limits.workspaceBytes). */
  maxBytes?: number;
  /** Entries per archive; default 10 000. */
  maxEntries?: number;
}

const BASE64 = /^[A-Za-z0-9+/\r\n]*={0,2}\s*$/;

/**
 * `files`: moves files in and out of the session's workspace as tar archives
 * (base64 over the wire). Upload accepts only regular files and directories
 * with relative paths, checks the whole archive before writing anything, and
 * writes through the confined workspace walk. Download packs a file or a
 * directory without following any symlink out of the workspace.
 *
 * Download result: two text blocks, a one-line summary for the model, then the
 * base64 tar alone (for a program to take).
 */
export function createFilesTool(options: FilesToolOptions = {}): ToolDefinition<FilesInput> {
  return {
    name: 'files',
    inputSchema: FilesInputSchema,
    sandbox: 'process',
    async run(input, ctx) {
      if (ctx.signal.aborted) return textOutcome('The call was cancelled before it started.', 'cancelled', true);
      try {
        const sandbox = await ctx.sandbox();
        const ws = await WorkspaceFs.open(sandbox.workspaceDir);
        const maxBytes = Math.min(options.maxBytes ?? 64 * 1024 * 1024, sandbox.limits.workspaceBytes);
        const maxEntries = options.maxEntries ?? 10_000;
        if (input.action === 'upload') {
          if (!BASE64.test(input.tar)) {
            throw new RunnerError('invalid_input', 'tar is not base64; send the archive base64-encoded (base64 -w0 archive.tar).');
          }
          const archive = Buffer.from(input.tar, 'base64');
          const planned = await planUpload(archive, { maxBytes, maxEntries });
          const destRel = ws.relative(input.path);
          const summary = await applyUpload(ws, destRel, planned, ctx.signal);
          return textOutcome(
            `Uploaded ${summary.files} files (${summary.bytes} bytes) and ${summary.directories} directories into ${ws.display(destRel)}.`,
          );
        }
        const result = await packDownload(ws, input.path, { maxBytes, maxEntries }, ctx.signal);
        const skipped = result.skipped > 0 ? `, ${result.skipped} sockets/FIFOs/devices left out` : '';
        const summary =
          `Downloaded ${result.shown}: ${result.files} files, ${result.directories} directories, ` +
          `${result.symlinks} symlinks stored as links${skipped}; tar of ${result.archive.length} bytes, base64 in the next block.`;
        return {
          status: 'completed',
          isError: false,
          content: [
            { type: 'text', text: summary },
            { type: 'text', text: result.archive.toString('base64') },
          ],
        };
      } catch (err) {
        if (ctx.signal.aborted) return textOutcome('The files call was cancelled.', 'cancelled', true);
        return failureOutcome(err, ctx.logger, 'files');
      }
    },
  };
}

/** The files tool with default options. */
export const filesTool = createFilesTool();
