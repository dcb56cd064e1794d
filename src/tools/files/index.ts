export { createFilesTool, filesTool, type FilesInput, type FilesToolOptions } from './files-tool.js';
export { TarWriter, type TarEntry } from './tar-writer.js';
