// `spawnWorker`: the follower in a Web Worker (or a Node worker thread), and a proxy with
// the same API on this thread, so that syncing a large pinset never blocks the page.
import { FollowerBase, ClosedError, abortable, typed } from './follower.js';

function revive(error) {
  return typed(Object.assign(new Error(error.message), error));
}

async function startWorker() {
  const url = new URL('./worker.js', import.meta.url);
  if (typeof globalThis.Worker === 'function') {
    const worker = new globalThis.Worker(url, { type: 'module' });
    return {
      post: (message) => worker.postMessage(message),
      listen: (handler) => worker.addEventListener('message', (event) => handler(event.data)),
      terminate: () => worker.terminate(),
    };
  }
  const { Worker } = await import('node:worker_threads');
  const worker = new Worker(url);
  return {
    post: (message) => worker.postMessage(message),
    listen: (handler) => worker.on('message', handler),
    terminate: () => worker.terminate(),
  };
}

/** A follower running in a Worker: the same API as `Follower`. */
export class WorkerFollower extends FollowerBase {
  #worker;
  #calls = new Map();
  #next = 0;
  #closed = false;
  #peerId;

  /** @internal */
  static async start(options, signal) {
    const follower = new WorkerFollower();
    follower.#worker = await startWorker();
    const started = new Promise((resolve, reject) => {
      follower.#worker.listen((message) => {
        if (message.started) {
          follower.#peerId = message.started;
          resolve();
        } else if (message.failed) {
          reject(revive(message.failed));
        } else if (message.events) {
          for (const [type, value] of message.events) follower.emit(type, value);
        } else {
          const call = follower.#calls.get(message.id);
          follower.#calls.delete(message.id);
          if (message.error) call?.reject(revive(message.error));
          else call?.resolve(message.value);
        }
      });
    });
    follower.#worker.post({ start: options });
    try {
      await abortable(started, signal);
    } catch (error) {
      follower.#worker.terminate();
      throw error;
    }
    return follower;
  }

  #call(method, args, signal) {
    if (this.#closed) return Promise.reject(new ClosedError('the follower is closed', 'CLOSED'));
    const id = this.#next++;
    const answer = new Promise((resolve, reject) => this.#calls.set(id, { resolve, reject }));
    this.#worker.post({ id, method, args });
    return abortable(answer, signal);
  }

  get peerId() {
    return this.#peerId;
  }

  pinsPage(after, limit, { signal } = {}) {
    return this.#call('pinsPage', [after, limit], signal);
  }

  get(cid, { signal } = {}) {
    return this.#call('get', [cid], signal);
  }

  statuses(cids, { signal } = {}) {
    return this.#call('statuses', [cids], signal);
  }

  summaries({ signal } = {}) {
    return this.#call('summaries', [], signal);
  }

  peers({ signal } = {}) {
    return this.#call('peers', [], signal);
  }

  metrics(name, { signal } = {}) {
    return this.#call('metrics', [name], signal);
  }

  metricNames({ signal } = {}) {
    return this.#call('metricNames', [], signal);
  }

  syncState({ signal } = {}) {
    return this.#call('syncState', [], signal);
  }

  /** Closes the follower and ends the Worker. */
  async close() {
    if (this.#closed) return;
    try {
      await this.#call('close', []);
    } finally {
      this.#closed = true;
      this.#worker.terminate();
      this.clearListeners();
      for (const call of this.#calls.values()) call.reject(new ClosedError('the follower is closed', 'CLOSED'));
      this.#calls.clear();
    }
  }
}

/**
 * Starts a follower in a Worker (a module Web Worker in browsers and Deno, a worker thread
 * in Node) with `follow`'s options, and resolves with a proxy that has the same API.
 */
export async function spawnWorker({ signal, ...options } = {}) {
  if (typeof options.bootstrap === 'string') options.bootstrap = [options.bootstrap];
  return WorkerFollower.start(options, signal);
}
