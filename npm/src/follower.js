// The light follower: joins a cluster's private swarm over WebSocket, syncs its pinset
// and follows it live. A thin layer over the WebAssembly `Follower`: it parses answers,
// turns error codes into error classes, and gives every call an AbortSignal.
import * as wasm from '../dist/pinfold_wasm.js';
import { ready } from './load.js';

/** Every error the follower throws; `code` says which kind. */
export class PinfoldError extends Error {
  constructor(message, code, options) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}
/** The bootstrap peer refused the private-network handshake: the secret differs. */
export class WrongSecretError extends PinfoldError {}
/** No bootstrap peer could be reached, or none answered in time. */
export class UnreachableError extends PinfoldError {}
/** An option is missing or malformed; the message names it. */
export class InvalidOptionsError extends PinfoldError {}
/** The follower was closed. */
export class ClosedError extends PinfoldError {}
/** IndexedDB could not be opened, read or written; the message says why. */
export class StorageError extends PinfoldError {}
/** Pinset data came from a peer that is not trusted and was ignored (an `error` event). */
export class UntrustedDataError extends PinfoldError {}

const errorClasses = {
  WRONG_SECRET: WrongSecretError,
  UNREACHABLE: UnreachableError,
  INVALID_OPTIONS: InvalidOptionsError,
  INVALID_CID: InvalidOptionsError,
  CLOSED: ClosedError,
  STORAGE: StorageError,
  UNTRUSTED_DATA: UntrustedDataError,
};

/** The error class of `error`'s code (errors crossing from WebAssembly or a Worker). */
export function typed(error) {
  if (error instanceof PinfoldError || typeof error?.code !== 'string') return error;
  const Class = errorClasses[error.code] ?? PinfoldError;
  return new Class(error.message, error.code, { cause: error });
}

/** Rejects with the signal's reason once it aborts, whatever `promise` does. */
export function abortable(promise, signal) {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

async function call(run, signal) {
  try {
    return await abortable(run(), signal);
  } catch (error) {
    throw typed(error);
  }
}

const EVENTS = ['pin', 'unpin', 'peer', 'sync', 'error'];

/** What every follower offers, wherever it runs: events and the paging of pins. */
export class FollowerBase {
  #listeners = new Map(EVENTS.map((type) => [type, new Set()]));

  /** @internal Calls the listeners of `type` with `value` (for `error`, a typed error). */
  emit(type, value) {
    if (type === 'error' && !(value instanceof Error))
      value = typed(Object.assign(new Error(value.message), { code: value.code }));
    for (const listener of this.#listeners.get(type) ?? []) {
      try {
        listener(value);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  /** @internal */
  clearListeners() {
    for (const listeners of this.#listeners.values()) listeners.clear();
  }

  /**
   * Listens to `pin` (a pin was added or changed), `unpin` ({cid}), `peer` ({id, joined}),
   * `sync` (the sync state, when it changes) or `error` (a PinfoldError: UntrustedDataError,
   * StorageError, WrongSecretError, or code SNAPSHOT). Returns a function that stops listening.
   */
  on(type, listener) {
    const listeners = this.#listeners.get(type);
    if (!listeners) throw new TypeError(`unknown event ${JSON.stringify(type)}: one of ${EVENTS.join(', ')}`);
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  /** The statuses of `cid` on the cluster peers the follower is connected to. */
  async status(cid, { signal } = {}) {
    const [info] = await this.statuses([cid], { signal });
    if (!info) throw new PinfoldError(`no connected peer reported a status of ${cid}`, 'NO_STATUS');
    return info;
  }

  /** Every pin of the pinset, in state order, fetched `pageSize` at a time. */
  async *pins({ signal, pageSize = 1000 } = {}) {
    let after;
    for (;;) {
      const page = await this.pinsPage(after, pageSize, { signal });
      yield* page;
      if (page.length < pageSize) return;
      after = page[page.length - 1].cid;
    }
  }
}

/** A running follower on this thread; made by `follow`. */
export class Follower extends FollowerBase {
  #inner;
  #peerId;
  #closed = false;

  /** @internal Runs the start and keeps the handle. */
  static async start(options, signal) {
    await ready();
    const follower = new Follower();
    const onEvent = (type, json) => follower.emit(type, JSON.parse(json));
    const starting = wasm.Follower.start(JSON.stringify(options), onEvent);
    try {
      follower.#inner = await call(() => starting, signal);
      follower.#peerId = follower.#inner.peerId;
    } catch (error) {
      // A start that was aborted may still succeed later: close what it makes.
      starting.then(
        (inner) => inner.close(),
        () => {},
      );
      throw error;
    }
    return follower;
  }

  #live() {
    if (this.#closed) throw new ClosedError('the follower is closed', 'CLOSED');
    return this.#inner;
  }

  /** This follower's libp2p peer id. */
  get peerId() {
    return this.#peerId;
  }

  /** Up to `limit` pins in state order, after the pin of `after` (a CID, or undefined). */
  async pinsPage(after, limit, { signal } = {}) {
    return JSON.parse(await call(() => this.#live().pins(after, limit), signal));
  }

  /** The pin of `cid`, or null when the pinset has none. */
  async get(cid, { signal } = {}) {
    const json = await call(() => this.#live().get(cid), signal);
    return JSON.parse(json);
  }

  /** The statuses of up to 1000 `cids` on the connected cluster peers, one request per peer. */
  async statuses(cids, { signal } = {}) {
    return JSON.parse(await call(() => this.#live().statuses(cids), signal));
  }

  /**
   * Each connected cluster peer's statuses of the whole pinset, counted:
   * `[{ peer, peername, pins, statuses: { pinned: n, ... } }]`, or `{ peer, peername, error }`.
   */
  async summaries({ signal } = {}) {
    return JSON.parse(await call(() => this.#live().summaries(), signal));
  }

  /** The cluster peers seen through their `ping` metrics. */
  async peers({ signal } = {}) {
    return JSON.parse(await call(() => this.#live().peers(), signal));
  }

  /** The latest live metric called `name` of each peer (for example "freespace"). */
  async metrics(name, { signal } = {}) {
    return JSON.parse(await call(() => this.#live().metrics(name), signal));
  }

  /** The names of the metrics received from the peers ("ping", "freespace", "tag:group", ...). */
  async metricNames({ signal } = {}) {
    return JSON.parse(await call(() => this.#live().metricNames(), signal));
  }

  /** Heads, height and progress of the sync. */
  async syncState({ signal } = {}) {
    return JSON.parse(await call(() => this.#live().syncState(), signal));
  }

  /** Leaves the swarm. Later calls throw ClosedError. */
  async close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#inner.close();
    this.#inner.free();
    this.clearListeners();
  }
}

/**
 * Joins a cluster as a light follower and resolves once a bootstrap peer is connected.
 *
 * Options: `bootstrap` (multiaddrs of peers' WebSocket or webrtc-direct listeners),
 * `secret` (64 hex characters or swarm.key text), `cluster` (the cluster name, default
 * "ipfs-cluster"), `trustedPeers` (peer ids whose pinset is followed, or ["*"]; default:
 * the peers the bootstrap addresses name), `connectTimeoutMs` (default 15000), `storage`
 * ("memory", the default, or "indexeddb" to resume after a reload), `storageName` (the
 * IndexedDB database, default "pinfold-<cluster>"), `signal`.
 */
export async function follow({ signal, ...options } = {}) {
  if (typeof options.bootstrap === 'string') options.bootstrap = [options.bootstrap];
  return Follower.start(options, signal);
}
