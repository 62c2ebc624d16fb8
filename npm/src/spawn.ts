// `spawnWorker`: the follower in a Web Worker (or a Node worker thread), and a proxy with
// the same API on this thread, so that syncing a large pinset never blocks the page.
import { ClosedError } from './errors.js';
import { FollowerBase, normalizeOptions, type EventType } from './follower.js';
import { workerScript } from './load.js';
import { RpcClient, workerPort, type Port } from './rpc.js';
import type {
  CallOptions,
  FollowOptions,
  GlobalPinInfo,
  Metric,
  PeerSummary,
  PeerView,
  Pin,
  SyncState,
} from './types.js';
import type { WorkerMethods, WorkerPushes } from './worker.js';

/** The Worker as a port, and how to end it. */
async function startWorker(): Promise<Port & { terminate(): void }> {
  const url = workerScript();
  if (typeof globalThis.Worker === 'function') {
    const worker = new globalThis.Worker(url, { type: 'module' });
    return { ...workerPort(worker), terminate: () => worker.terminate() };
  }
  const { Worker } = await import('node:worker_threads');
  const worker = new Worker(url);
  return {
    post: (message) => worker.postMessage(message),
    listen: (handler) => worker.on('message', handler),
    terminate: () => void worker.terminate(),
  };
}

/** A follower running in a Worker: the same API as `Follower`. */
export class WorkerFollower extends FollowerBase {
  #worker: Port & { terminate(): void };
  #rpc: RpcClient<WorkerMethods, WorkerPushes>;
  #closed = false;
  #peerId = '';

  private constructor(worker: Port & { terminate(): void }) {
    super();
    this.#worker = worker;
    this.#rpc = new RpcClient(worker);
    this.#rpc.on('events', (batch) => {
      for (const [type, value] of batch) this.emit(type, value);
    });
  }

  /** @internal */
  static async start(options: Omit<FollowOptions, 'signal'>, signal?: AbortSignal): Promise<WorkerFollower> {
    const follower = new WorkerFollower(await startWorker());
    try {
      follower.#peerId = await follower.#rpc.call('start', [options], signal);
    } catch (error) {
      follower.#worker.terminate();
      throw error;
    }
    return follower;
  }

  #call<K extends keyof WorkerMethods & string>(
    method: K,
    args: Parameters<WorkerMethods[K]>,
    signal?: AbortSignal,
  ): Promise<Awaited<ReturnType<WorkerMethods[K]>>> {
    if (this.#closed) return Promise.reject(new ClosedError('the follower is closed', 'CLOSED'));
    return this.#rpc.call(method, args, signal);
  }

  get peerId(): string {
    return this.#peerId;
  }

  /** The Worker sends pin events only while something here listens to them. */
  protected override listenersChanged(type: EventType): void {
    if ((type === 'pin' || type === 'unpin') && !this.#closed) {
      // Fails only once the Worker is gone, when there is nothing left to send.
      this.#call('listenToPins', [this.listensToPins()]).catch(() => {});
    }
  }

  pinsPage(after: string | undefined, limit: number, { signal }: CallOptions = {}): Promise<Pin[]> {
    return this.#call('pinsPage', [after, limit], signal);
  }

  get(cid: string, { signal }: CallOptions = {}): Promise<Pin | null> {
    return this.#call('get', [cid], signal);
  }

  statuses(cids: string[], { signal }: CallOptions = {}): Promise<GlobalPinInfo[]> {
    return this.#call('statuses', [cids], signal);
  }

  summaries({ signal }: CallOptions = {}): Promise<PeerSummary[]> {
    return this.#call('summaries', [], signal);
  }

  peers({ signal }: CallOptions = {}): Promise<PeerView[]> {
    return this.#call('peers', [], signal);
  }

  metrics(name: string, { signal }: CallOptions = {}): Promise<Metric[]> {
    return this.#call('metrics', [name], signal);
  }

  metricNames({ signal }: CallOptions = {}): Promise<string[]> {
    return this.#call('metricNames', [], signal);
  }

  syncState({ signal }: CallOptions = {}): Promise<SyncState> {
    return this.#call('syncState', [], signal);
  }

  /** Closes the follower and ends the Worker. */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#call('close', []);
    } finally {
      this.#closed = true;
      this.#worker.terminate();
      this.clearListeners();
      this.#rpc.close();
    }
  }
}

/** Events as the Worker sends them: a batch of `[type, value]`. */
export type EventBatch = [EventType, unknown][];

/**
 * Starts a follower in a Worker (a module Web Worker in browsers and Deno, a worker thread
 * in Node) with `follow`'s options, and resolves with a proxy that has the same API.
 */
export async function spawnWorker(options: FollowOptions): Promise<WorkerFollower> {
  const normalized = normalizeOptions(options ?? ({} as FollowOptions));
  return WorkerFollower.start(normalized.options, normalized.signal);
}
