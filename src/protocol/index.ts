export * from './messages.js';
export * from './errors.js';
export * from './binary-frame.js';
export * from './parse.js';
export * from './tool-inputs.js';
