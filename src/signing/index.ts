export * from './canonical-json.js';
export * from './request-signing.js';
export * from './request-verifier.js';
export * from './nonce-store.js';
