import type { Command } from 'commander';
import { loadConfig } from '../../config/load-config.js';
import { buildImage, listImages } from '../../sandbox/images/index.js';
import { createLogger } from '../../util/logger.js';
import { out } from '../cli-context.js';

/**
 * `sandbox-runner images build [NAME] [--force]` and `images list [--json]`:
 * the sandbox images under the config's `sandbox.imagesDir` (default
 * `<package>/sandbox-images`). Exit codes: 0 ok, 1 failure, 2 usage.
 */
export function registerImagesCommand(program: Command): void {
  const images = program.command('images').description('sandbox images (a rootfs for bwrap, imported into Docker)');
  images
    .command('build')
    .description('build an image from Debian packages (mmdebstrap) and import it into Docker; quick when up to date')
    .argument('[name]', 'the image to build', 'base')
    .option('--force', 'rebuild even when up to date')
    .option('--no-docker', 'skip the Docker import')
    .option('--config <file>', 'config file (YAML)')
    .action(async (name: string, opts: { force?: boolean; docker: boolean; config?: string }) => {
      const config = await loadConfig(opts.config ? { file: opts.config } : {});
      const logger = createLogger({ level: config.logLevel, fd: 2 });
      // Ctrl-C reaches build.sh through the terminal's process group; nothing to forward.
      const rootfs = await buildImage(name, {
        imagesDir: config.sandbox.imagesDir,
        ...(opts.force ? { force: true } : {}),
        ...(opts.docker ? {} : { noDocker: true }),
        logger,
      });
      out(`${name}: ${rootfs}`);
    });
  images
    .command('list')
    .description('list the image definitions and whether each is built')
    .option('--json', 'print JSON')
    .option('--config <file>', 'config file (YAML)')
    .action(async (opts: { json?: boolean; config?: string }) => {
      const config = await loadConfig(opts.config ? { file: opts.config } : {});
      const list = await listImages(config.sandbox.imagesDir);
      if (opts.json) {
        out(JSON.stringify(list.map((i) => ({ ...i, built: i.rootfs !== undefined }))));
        return;
      }
      for (const i of list) out(`${i.name}\t${i.rootfs ? `built ${i.rootfs}` : 'not built'}\t${i.dockerTag}`);
    });
}
