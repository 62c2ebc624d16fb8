// A lean HTTP/1.1 client for load generators: one keep-alive connection, one request at a
// time, bodies read by Content-Length or chunks (no trailers). On a 2-core machine the
// client's CPU is taken from the peer it measures: node:http's costs several times this.
import net from 'node:net';

const HEADER_END = Buffer.from('\r\n\r\n');

/** One keep-alive connection to `origin` (`http://host:port`), reopened when the server closes it. */
export class Connection {
  #host;
  #port;
  /** The Host header: `host:port`, an IPv6 host in brackets. */
  #authority;
  #socket = null;
  #buffer = Buffer.alloc(0);
  /** The request in flight: { resolve, reject, timer }. */
  #pending = null;

  constructor(origin) {
    const url = new URL(origin);
    if (url.protocol !== 'http:') throw new Error(`only http: is spoken here, not ${url.protocol}`);
    this.#host = url.hostname.replace(/^\[|\]$/g, '');
    this.#port = Number(url.port || 80);
    this.#authority = url.host;
  }

  /**
   * Sends `method path` with `body` (a JSON string, or none when undefined); resolves with
   * the status and body text, rejects after `timeoutMs` or when the connection fails.
   */
  request(method, path, body, timeoutMs = 60_000) {
    if (this.#pending) return Promise.reject(new Error('one request at a time per Connection'));
    const socket = this.#open();
    const length = body === undefined ? 0 : Buffer.byteLength(body);
    const type = body === undefined ? '' : 'content-type: application/json\r\n';
    socket.write(
      `${method} ${path} HTTP/1.1\r\nhost: ${this.#authority}\r\n${type}content-length: ${length}\r\n\r\n${body ?? ''}`,
    );
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#fail(new Error(`no answer in ${timeoutMs} ms: ${method} ${path}`));
      }, timeoutMs);
      this.#pending = { resolve, reject, timer };
    });
  }

  /** Closes the connection. */
  close() {
    const socket = this.#socket;
    this.#socket = null;
    socket?.destroy();
  }

  #open() {
    if (this.#socket) return this.#socket;
    const socket = net.connect({ host: this.#host, port: this.#port, noDelay: true });
    // A socket's late events (after it was replaced) are not this connection's.
    socket.on('data', (chunk) => {
      if (this.#socket !== socket) return;
      try {
        this.#read(chunk);
      } catch (error) {
        this.#fail(error);
      }
    });
    socket.on('error', (error) => this.#socket === socket && this.#fail(error));
    socket.on('close', () => this.#socket === socket && this.#fail(new Error('the server closed the connection')));
    this.#buffer = Buffer.alloc(0);
    this.#socket = socket;
    return socket;
  }

  #read(chunk) {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const headerEnd = this.#buffer.indexOf(HEADER_END);
    if (headerEnd < 0 || !this.#pending) return;
    const head = this.#buffer.toString('latin1', 0, headerEnd);
    const bodyStart = headerEnd + HEADER_END.length;
    const framed = /\r\ntransfer-encoding:\s*chunked/i.test(head)
      ? dechunk(this.#buffer, bodyStart)
      : byLength(this.#buffer, bodyStart, Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0));
    if (!framed) return;
    this.#buffer = this.#buffer.subarray(framed.end);
    const { resolve, timer } = this.#pending;
    this.#pending = null;
    clearTimeout(timer);
    if (/\r\nconnection:\s*close/i.test(head)) this.close();
    resolve({ status: Number(head.slice(9, 12)), body: framed.body });
  }

  #fail(error) {
    this.close();
    if (!this.#pending) return;
    const { reject, timer } = this.#pending;
    this.#pending = null;
    clearTimeout(timer);
    reject(error);
  }
}

/** The body of `length` bytes at `start` and where it ends, or null while incomplete. */
function byLength(buffer, start, length) {
  if (buffer.length < start + length) return null;
  return { body: buffer.toString('utf8', start, start + length), end: start + length };
}

/** The chunked body at `start` (without trailers) and where it ends, or null while incomplete. */
function dechunk(buffer, start) {
  const parts = [];
  let at = start;
  for (;;) {
    const lineEnd = buffer.indexOf('\r\n', at);
    if (lineEnd < 0) return null;
    const size = parseInt(buffer.toString('latin1', at, lineEnd), 16);
    if (Number.isNaN(size)) throw new Error('a malformed chunked response');
    if (size === 0) {
      if (buffer.length < lineEnd + 4) return null;
      return { body: Buffer.concat(parts).toString('utf8'), end: lineEnd + 4 };
    }
    if (buffer.length < lineEnd + 2 + size + 2) return null;
    parts.push(buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}
