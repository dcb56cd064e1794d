export { listImages, buildImage, resolveImage, dockerTagFor, imagesOutDir } from './images.js';
export type { ImageInfo, BuildImageOptions } from './images.js';
