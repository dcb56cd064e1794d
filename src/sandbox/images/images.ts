import { access, readdir, readFile, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { RunnerError } from '../../util/errors.js';
import { noopLogger, type Logger } from '../../util/logger.js';

/**
 * Sandbox images: each is a folder `sandbox-images/<name>/` holding a `build.sh`
 * that writes `<out>/<name>/rootfs` (used as a directory by bwrap) and imports it
 * into Docker as `sandbox-runner/<name>:latest` when an engine answers.
 */

/** One image definition and whether it has been built. */
export interface ImageInfo {
  name: string;
  /** Folder holding build.sh, packages.txt, Dockerfile. */
  definitionDir: string;
  /** The built rootfs, when there is one. */
  rootfs: string | undefined;
  /** Stamp of the last build (hash of the definition), when built. */
  stamp: string | undefined;
  /** The Docker tag that build.sh imports it as. */
  dockerTag: string;
}

/** Image names are folder names and Docker tag parts: keep them plain. */
const IMAGE_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** Docker tag of an image built by build.sh. */
export function dockerTagFor(name: string): string {
  return `sandbox-runner/${name}:latest`;
}

/**
 * Where built images go: `SANDBOX_IMAGES_OUT` semantics of build.sh, default
 * `<imagesDir>/out`.
 */
export function imagesOutDir(imagesDir: string, outDir?: string): string {
  return path.resolve(outDir ?? path.join(imagesDir, 'out'));
}

/**
 * The rootfs directory of a built image, or undefined when `name` is not built
 * (or not a valid name). A rootfs counts as built when its `bin/sh` exists.
 */
export async function resolveImage(name: string, imagesDir: string, outDir?: string): Promise<string | undefined> {
  if (!IMAGE_NAME.test(name)) return undefined;
  const rootfs = path.join(imagesOutDir(imagesDir, outDir), name, 'rootfs');
  try {
    await access(path.join(rootfs, 'bin', 'sh'), constants.F_OK);
    return rootfs;
  } catch {
    return undefined;
  }
}

/** Lists the image definitions under `imagesDir` (folders with a build.sh), built or not. */
export async function listImages(imagesDir: string, outDir?: string): Promise<ImageInfo[]> {
  let entries: string[];
  try {
    entries = await readdir(imagesDir);
  } catch (err) {
    throw new RunnerError('config_invalid', `sandbox images folder ${imagesDir} cannot be read; point the images dir at the repository's sandbox-images folder`, { cause: err });
  }
  const images: ImageInfo[] = [];
  for (const name of entries.sort()) {
    if (!IMAGE_NAME.test(name) || name === 'out') continue;
    const definitionDir = path.join(imagesDir, name);
    const isImage = await stat(path.join(definitionDir, 'build.sh')).then((s) => s.isFile(), () => false);
    if (!isImage) continue;
    const rootfs = await resolveImage(name, imagesDir, outDir);
    const stamp = rootfs
      ? (await readFile(path.join(imagesOutDir(imagesDir, outDir), name, 'stamp'), 'utf8').catch(() => '')).trim() || undefined
      : undefined;
    images.push({ name, definitionDir, rootfs, stamp, dockerTag: dockerTagFor(name) });
  }
  return images;
}

export interface BuildImageOptions {
  imagesDir: string;
  /** Where the rootfs goes; default `<imagesDir>/out`. */
  outDir?: string;
  /** Rebuild even when the stamp says it is up to date. */
  force?: boolean;
  /** Skip the Docker import. */
  noDocker?: boolean;
  signal?: AbortSignal;
  logger?: Logger;
}

/**
 * Builds an image by running its build.sh (mmdebstrap, then `docker import`).
 * Fast when already built. Returns the rootfs path.
 * @throws RunnerError `invalid_input` for an unknown image, `sandbox_failed`
 *   when the build fails (the script's output in `detail`), `cancelled` on abort.
 */
export async function buildImage(name: string, options: BuildImageOptions): Promise<string> {
  const logger = options.logger ?? noopLogger;
  const images = await listImages(options.imagesDir, options.outDir);
  const image = images.find((i) => i.name === name);
  if (!image) {
    const known = images.map((i) => i.name).join(', ') || 'none';
    throw new RunnerError('invalid_input', `there is no sandbox image named ${JSON.stringify(name)}; pick one of: ${known}`);
  }
  const args = [path.join(image.definitionDir, 'build.sh')];
  if (options.force) args.push('--force');
  if (options.noDocker) args.push('--no-docker');
  logger.info({ image: name }, 'building sandbox image');
  const result = await execa('bash', args, {
    reject: false,
    all: true,
    cancelSignal: options.signal,
    env: { SANDBOX_IMAGES_OUT: imagesOutDir(options.imagesDir, options.outDir) },
    // Keep only the tail: mmdebstrap is chatty.
    maxBuffer: 4 * 1024 * 1024,
  });
  if (result.isCanceled) {
    throw new RunnerError('cancelled', `building sandbox image ${name} was cancelled; run the build again to finish it`);
  }
  if (result.exitCode !== 0) {
    throw new RunnerError('sandbox_failed', `building sandbox image ${name} failed; see the detail, fix it, and run sandbox-images/${name}/build.sh`, {
      detail: String(result.all ?? '').slice(-4000),
    });
  }
  for (const line of String(result.all ?? '').split('\n')) {
    if (line.startsWith('[image')) logger.info({ image: name }, line);
  }
  const rootfs = await resolveImage(name, options.imagesDir, options.outDir);
  if (!rootfs) throw new RunnerError('sandbox_failed', `sandbox image ${name} built without a rootfs; run sandbox-images/${name}/build.sh --force`);
  return rootfs;
}
