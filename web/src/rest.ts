// The operator view's client of a trusted peer's REST API (ipfs-cluster's routes): pin,
// unpin and recover, with basic auth or a bearer token. The follower never writes; this
// is how the dashboard does.

export interface RestAccess {
  /** The API's origin, e.g. http://127.0.0.1:9094. */
  base: string;
  /** "user:password" for basic auth, or empty. */
  basic: string;
  /** A bearer token (POST /token), or empty. */
  token: string;
}

export interface PinRequest {
  cid: string;
  name: string;
  /** Empty: the cluster's defaults. */
  replicationMin: string;
  replicationMax: string;
}

/** A failed call, with what to do about it in the message. */
export class RestError extends Error {
  readonly status: number;
  constructor(message: string, status: number) {
    super(message);
    this.name = 'RestError';
    this.status = status;
  }
}

/** The query string of a pin request (ipfs-cluster's POST /pins/{cid} options). */
export function pinQuery(request: PinRequest): string {
  const params = new URLSearchParams();
  if (request.name.trim()) params.set('name', request.name.trim());
  if (request.replicationMin.trim()) params.set('replication-min', request.replicationMin.trim());
  if (request.replicationMax.trim()) params.set('replication-max', request.replicationMax.trim());
  const text = params.toString();
  return text ? `?${text}` : '';
}

export class RestApi {
  readonly access: RestAccess;

  constructor(access: RestAccess) {
    this.access = { ...access, base: access.base.trim().replace(/\/+$/, '') };
  }

  /** The peer's id and name (GET /id): checks the address and the credentials. */
  id(): Promise<{ id: string; peername: string }> {
    return this.#call('GET', '/id');
  }

  pin(request: PinRequest): Promise<unknown> {
    const cid = request.cid.trim();
    if (!cid) return Promise.reject(new RestError('Give the CID to pin.', 0));
    return this.#call('POST', `/pins/${encodeURIComponent(cid)}${pinQuery(request)}`);
  }

  unpin(cid: string): Promise<unknown> {
    return this.#call('DELETE', `/pins/${encodeURIComponent(cid)}`);
  }

  recover(cid: string): Promise<unknown> {
    return this.#call('POST', `/pins/${encodeURIComponent(cid)}/recover`);
  }

  async #call<T>(method: string, route: string): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.access.token) headers.authorization = `Bearer ${this.access.token}`;
    else if (this.access.basic) headers.authorization = `Basic ${btoa(this.access.basic)}`;
    let response: Response;
    try {
      // Credentials only from this page's fields: with the browser's own ("omit"), a 401
      // would open its login prompt instead of reaching this code.
      response = await fetch(`${this.access.base}${route}`, {
        method,
        headers,
        credentials: 'omit',
        signal: AbortSignal.timeout(30_000),
      });
    } catch (error) {
      throw new RestError(
        `Could not reach the REST API at ${this.access.base} (${(error as Error).message}). Is the peer running? If this ` +
          'page is not served by that peer, its api.restapi.cors_allowed_origins and cors_allowed_methods must allow ' +
          'this page and POST and DELETE.',
        0,
      );
    }
    const text = await response.text();
    if (response.status === 401) {
      throw new RestError(
        'The REST API refused the credentials: check the user and password (api.restapi.basic_auth_credentials) or the token.',
        401,
      );
    }
    if (!response.ok) {
      let message = text;
      try {
        message = JSON.parse(text).message ?? text;
      } catch {
        // Not ipfs-cluster's error JSON: keep the text.
      }
      throw new RestError(`${method} ${route}: ${response.status} ${message}`, response.status);
    }
    return (text ? JSON.parse(text.trim().split('\n')[0]) : null) as T;
  }
}
