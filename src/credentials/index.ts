export * from './redactor.js';
export * from './log-redaction.js';
export * from './sealed-credential.js';
export * from './credential-set.js';
export * from './vault.js';
export * from './key-files.js';
export * from './core-dumps.js';
