// Calls across a Worker boundary, shared by `spawnWorker` and the dashboard: the page calls
// methods the Worker serves (`{id, method, args}` answered by `{id, value}` or `{id, error}`),
// and the Worker pushes values the page listens to (`{push, value}`). Errors cross as
// `{name, code, message}` and come back as the package's error classes.
import { ClosedError, reviveError, serializeError, type SerializedError } from './errors.js';

export type { SerializedError };
import { abortable } from './abort.js';

/** One end of a message channel: a Worker seen from the page, or the page seen from inside
 * the Worker. */
export interface Port {
  post(message: unknown): void;
  listen(handler: (message: unknown) => void): void;
}

/** Functions a Worker serves; each may answer with a promise. */
export type Methods = Record<string, (...args: never[]) => unknown>;

type Message =
  | { id: number; method: string; args: unknown[] }
  | { id: number; value: unknown }
  | { id: number; error: SerializedError }
  | { push: string; value: unknown };

/**
 * Serves `methods` on `port` (inside the Worker). Calls run as they come; a method that
 * throws answers with the error. Returns `push`, which sends a value to the page's
 * listeners of `name`.
 */
export function serve(port: Port, methods: Methods): (name: string, value: unknown) => void {
  port.listen(async (message) => {
    const { id, method, args } = message as { id: number; method: string; args: unknown[] };
    const run = Object.hasOwn(methods, method) ? methods[method] : undefined;
    try {
      if (!run) throw new TypeError(`unknown method ${JSON.stringify(method)}`);
      port.post({ id, value: await (run as (...args: unknown[]) => unknown)(...args) });
    } catch (error) {
      port.post({ id, error: serializeError(error) });
    }
  });
  return (name, value) => port.post({ push: name, value });
}

/** The page's side: calls to the Worker's `M` methods, and listeners of its pushes `P`. */
export class RpcClient<M extends Methods, P extends Record<string, unknown> = Record<string, never>> {
  #port: Port;
  #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: unknown) => void }>();
  #listeners = new Map<string, Set<(value: never) => void>>();
  #next = 0;
  #closed = false;

  constructor(port: Port) {
    this.#port = port;
    port.listen((raw) => {
      const message = raw as Message;
      if ('push' in message) {
        for (const listener of this.#listeners.get(message.push) ?? []) listener(message.value as never);
      } else if ('error' in message || 'value' in message) {
        const pending = this.#pending.get(message.id);
        this.#pending.delete(message.id);
        if ('error' in message) pending?.reject(reviveError(message.error));
        else pending?.resolve(message.value);
      }
    });
  }

  /** Calls `method` in the Worker; rejects with ClosedError once the client is closed. */
  call<K extends keyof M & string>(
    method: K,
    args: Parameters<M[K]>,
    signal?: AbortSignal,
  ): Promise<Awaited<ReturnType<M[K]>>> {
    if (this.#closed) return Promise.reject(new ClosedError('the worker is closed', 'CLOSED'));
    const id = this.#next++;
    const answer = new Promise<Awaited<ReturnType<M[K]>>>((resolve, reject) =>
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject }),
    );
    this.#port.post({ id, method, args });
    return abortable(answer, signal);
  }

  /** Listens to the Worker's pushes of `name`; returns a function that stops listening. */
  on<K extends keyof P & string>(name: K, listener: (value: P[K]) => void): () => void {
    const listeners = this.#listeners.get(name) ?? new Set();
    this.#listeners.set(name, listeners);
    listeners.add(listener as (value: never) => void);
    return () => listeners.delete(listener as (value: never) => void);
  }

  /** Rejects every call still waiting, and every later one, with ClosedError. */
  close(): void {
    this.#closed = true;
    this.#listeners.clear();
    for (const pending of this.#pending.values()) pending.reject(new ClosedError('the worker is closed', 'CLOSED'));
    this.#pending.clear();
  }
}

/** A Web Worker (or a Deno Worker) as a port. */
export function workerPort(worker: Worker): Port {
  return {
    post: (message) => worker.postMessage(message),
    listen: (handler) => worker.addEventListener('message', (event) => handler((event as MessageEvent).data)),
  };
}

/** Inside a Worker: the page as a port. A Web Worker's global scope (Deno's Workers are Web
 * Workers with a Node-like `process` too), or Node's `parentPort`; `undefined` elsewhere. */
export async function parentPort(): Promise<Port | undefined> {
  const scope = globalThis as unknown as {
    WorkerGlobalScope?: abstract new () => unknown;
    postMessage(message: unknown): void;
    addEventListener(type: 'message', listener: (event: MessageEvent) => void): void;
    process?: { versions?: { node?: string } };
  };
  if (scope.WorkerGlobalScope && globalThis instanceof scope.WorkerGlobalScope) {
    return {
      post: (message) => scope.postMessage(message),
      listen: (handler) => scope.addEventListener('message', (event) => handler(event.data)),
    };
  }
  if (scope.process?.versions?.node) {
    const { parentPort: port } = await import('node:worker_threads');
    if (port) {
      return {
        post: (message) => port.postMessage(message),
        listen: (handler) => port.on('message', handler),
      };
    }
  }
  return undefined;
}
