/** A small client of the reference control plane's admin HTTP API. */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {}

  async request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any; text: string }> {
    const res = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text };
  }

  async pairingToken(ttlSeconds?: number): Promise<string> {
    const r = await this.request('POST', '/v1/pairing-tokens', ttlSeconds ? { ttlSeconds } : {});
    if (r.status !== 201) throw new Error(`pairing token: ${r.status} ${r.text}`);
    return r.body.token as string;
  }

  async runners(): Promise<Array<{ id: string; connected: boolean; capabilities: any; name: string; labels: Record<string, string> }>> {
    return (await this.request('GET', '/v1/runners')).body;
  }

  async call(runnerId: string, body: Record<string, unknown>, query = ''): Promise<{ status: number; body: any; text: string }> {
    return this.request('POST', `/v1/runners/${runnerId}/tool-calls${query}`, body);
  }
}
