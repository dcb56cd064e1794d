// placeholder replaced below
export interface IsolatePool { readonly kind: 'isolate-pool' }
