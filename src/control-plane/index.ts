export { ControlPlane, type BoundAddress } from './control-plane.js';
export type { ControlPlaneOptions } from './control-plane-options.js';
export type { MessageSigner, SignableMessage } from './runner-connection.js';
export type { PublicCall } from './call-store.js';
