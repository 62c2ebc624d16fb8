// The light follower: joins a cluster's private swarm over WebSocket, syncs its pinset
// and follows it live. A thin layer over the WebAssembly `Follower`: it parses answers,
// turns error codes into error classes, and gives every call an AbortSignal.
import type { Follower as WasmFollower } from '../dist/browser/pinfold_wasm.js';
import { abortable } from './abort.js';
import { ClosedError, PinfoldError, typed } from './errors.js';
import { ready } from './load.js';
import type {
  CallOptions,
  FollowerEvents,
  FollowOptions,
  GlobalPinInfo,
  Metric,
  PeerSummary,
  PeerView,
  Pin,
  SyncState,
} from './types.js';

async function call<T>(run: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  try {
    return await abortable(run(), signal);
  } catch (error) {
    throw typed(error);
  }
}

/** The events a follower emits. */
export type EventType = keyof FollowerEvents;
export const EVENTS: readonly EventType[] = ['pin', 'unpin', 'peer', 'sync', 'error'];

type Listener<K extends EventType> = (value: FollowerEvents[K]) => void;

/** What every follower offers, wherever it runs: events and the paging of pins. */
export abstract class FollowerBase {
  #listeners = new Map<EventType, Set<Listener<EventType>>>(EVENTS.map((type) => [type, new Set()]));

  /** Its libp2p peer id. */
  abstract get peerId(): string;
  /** Up to `limit` pins in state order, after the pin of `after` (a CID, or undefined). */
  abstract pinsPage(after: string | undefined, limit: number, options?: CallOptions): Promise<Pin[]>;
  /** The pin of `cid`, or null when the pinset has none. */
  abstract get(cid: string, options?: CallOptions): Promise<Pin | null>;
  /** The statuses of up to 1000 `cids` on the cluster's live peers, in the order asked; a
   * CID no peer reported on is left out. */
  abstract statuses(cids: string[], options?: CallOptions): Promise<GlobalPinInfo[]>;
  /** Each live cluster peer's statuses of the whole pinset, counted (one request per peer). */
  abstract summaries(options?: CallOptions): Promise<PeerSummary[]>;
  /** The cluster peers seen through their `ping` metrics. */
  abstract peers(options?: CallOptions): Promise<PeerView[]>;
  /** The latest live metric called `name` of each peer (for example "freespace"). */
  abstract metrics(name: string, options?: CallOptions): Promise<Metric[]>;
  /** The names of the metrics received from the peers ("ping", "freespace", "tag:group", ...). */
  abstract metricNames(options?: CallOptions): Promise<string[]>;
  /** Heads, height and progress of the sync. */
  abstract syncState(options?: CallOptions): Promise<SyncState>;
  /** Leaves the swarm; later calls throw ClosedError. */
  abstract close(): Promise<void>;

  /** @internal Calls the listeners of `type` with `value` (for `error`, a typed error). */
  emit(type: EventType, value: unknown): void {
    if (type === 'error' && !(value instanceof Error)) {
      const { message, code } = value as { message: string; code?: string };
      value = typed(Object.assign(new Error(message), { code }));
    }
    for (const listener of this.#listeners.get(type) ?? []) {
      try {
        listener(value as FollowerEvents[EventType]);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  /** @internal */
  clearListeners(): void {
    for (const listeners of this.#listeners.values()) listeners.clear();
  }

  /** Whether anything listens to `pin` or `unpin`. */
  protected listensToPins(): boolean {
    return (this.#listeners.get('pin')?.size ?? 0) + (this.#listeners.get('unpin')?.size ?? 0) > 0;
  }

  /** Called after a listener of `type` is added or removed. */
  protected listenersChanged(_type: EventType): void {}

  /**
   * Listens to `pin` (a pin was added or changed), `unpin` ({cid}), `peer` ({id, joined}),
   * `sync` (the sync state, when it changes) or `error` (a PinfoldError: UntrustedDataError,
   * StorageError, WrongSecretError, or code SNAPSHOT). Returns a function that stops listening.
   */
  on<K extends EventType>(type: K, listener: Listener<K>): () => void {
    const listeners = this.#listeners.get(type);
    if (!listeners) throw new TypeError(`unknown event ${JSON.stringify(type)}: one of ${EVENTS.join(', ')}`);
    listeners.add(listener as Listener<EventType>);
    this.listenersChanged(type);
    return () => {
      listeners.delete(listener as Listener<EventType>);
      this.listenersChanged(type);
    };
  }

  /** The statuses of `cid` on the cluster's live peers; NO_STATUS when none reported one. */
  async status(cid: string, { signal }: CallOptions = {}): Promise<GlobalPinInfo> {
    const [info] = await this.statuses([cid], { signal });
    if (!info) throw new PinfoldError(`no peer reported a status of ${cid}`, 'NO_STATUS');
    return info;
  }

  /** Every pin of the pinset, in state order, fetched `pageSize` at a time. */
  async *pins({ signal, pageSize = 1000 }: CallOptions & { pageSize?: number } = {}): AsyncGenerator<Pin> {
    let after: string | undefined;
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
  #inner: WasmFollower | undefined;
  #peerId = '';
  #closed = false;

  private constructor() {
    super();
  }

  /** @internal Runs the start and keeps the handle. */
  static async start(options: Omit<FollowOptions, 'signal'>, signal?: AbortSignal): Promise<Follower> {
    const wasm = await ready();
    const follower = new Follower();
    const onEvent = (type: string, json: string) => follower.emit(type as EventType, JSON.parse(json));
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

  #live(): WasmFollower {
    if (this.#closed || !this.#inner) throw new ClosedError('the follower is closed', 'CLOSED');
    return this.#inner;
  }

  /** Calls the WebAssembly follower and parses its JSON answer. */
  async #ask<T>(run: (inner: WasmFollower) => Promise<string>, signal?: AbortSignal): Promise<T> {
    return JSON.parse(await call(() => run(this.#live()), signal)) as T;
  }

  get peerId(): string {
    return this.#peerId;
  }

  /** The WebAssembly follower sends pin events only while something listens to them. */
  protected override listenersChanged(type: EventType): void {
    if ((type === 'pin' || type === 'unpin') && !this.#closed) this.#inner?.listenToPins(this.listensToPins());
  }

  pinsPage(after: string | undefined, limit: number, { signal }: CallOptions = {}): Promise<Pin[]> {
    return this.#ask((inner) => inner.pins(after, limit), signal);
  }

  get(cid: string, { signal }: CallOptions = {}): Promise<Pin | null> {
    return this.#ask((inner) => inner.get(cid), signal);
  }

  statuses(cids: string[], { signal }: CallOptions = {}): Promise<GlobalPinInfo[]> {
    return this.#ask((inner) => inner.statuses(cids), signal);
  }

  summaries({ signal }: CallOptions = {}): Promise<PeerSummary[]> {
    return this.#ask((inner) => inner.summaries(), signal);
  }

  peers({ signal }: CallOptions = {}): Promise<PeerView[]> {
    return this.#ask((inner) => inner.peers(), signal);
  }

  metrics(name: string, { signal }: CallOptions = {}): Promise<Metric[]> {
    return this.#ask((inner) => inner.metrics(name), signal);
  }

  metricNames({ signal }: CallOptions = {}): Promise<string[]> {
    return this.#ask((inner) => inner.metricNames(), signal);
  }

  syncState({ signal }: CallOptions = {}): Promise<SyncState> {
    return this.#ask((inner) => inner.syncState(), signal);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#inner?.close();
    this.#inner?.free();
    this.clearListeners();
  }
}

/** `follow`'s options with `bootstrap` always a list. */
export function normalizeOptions({ signal, ...options }: FollowOptions): {
  options: Omit<FollowOptions, 'signal'> & { bootstrap: string[] };
  signal?: AbortSignal;
} {
  const bootstrap = typeof options.bootstrap === 'string' ? [options.bootstrap] : options.bootstrap;
  return { options: { ...options, bootstrap }, signal };
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
export async function follow(options: FollowOptions): Promise<Follower> {
  const normalized = normalizeOptions(options ?? ({} as FollowOptions));
  return Follower.start(normalized.options, normalized.signal);
}
