// The follower's side of `spawnWorker`: runs in a Web Worker or a Node worker thread,
// starts a follower with the options it is sent, answers calls and forwards events.
//
// Messages in: {start: options}, {id, method, args}. Messages out: {started: peerId} or
// {failed: error}, {id, value} or {id, error}, and {events: [[type, value], ...]}, batched
// every EVENT_BATCH_MS so that a sync of many pins does not flood the page.
import { follow } from './follower.js';

const EVENT_BATCH_MS = 50;

/** Serves one follower on `port` (the worker's global scope, or Node's parentPort). */
export function serve(port) {
  let follower;
  let events = [];
  let timer;
  const flush = () => {
    timer = undefined;
    const batch = events;
    events = [];
    port.postMessage({ events: batch });
  };
  const errorOf = (error) => ({ name: error?.name, code: error?.code, message: String(error?.message ?? error) });
  const queue = (type) => (value) => {
    events.push([type, type === 'error' ? errorOf(value) : value]);
    timer ??= setTimeout(flush, EVENT_BATCH_MS);
  };
  const methods = {
    pinsPage: (after, limit) => follower.pinsPage(after, limit),
    get: (cid) => follower.get(cid),
    statuses: (cids) => follower.statuses(cids),
    summaries: () => follower.summaries(),
    peers: () => follower.peers(),
    metrics: (name) => follower.metrics(name),
    metricNames: () => follower.metricNames(),
    syncState: () => follower.syncState(),
    close: async () => {
      await follower.close();
      if (timer !== undefined) flush();
    },
  };
  return async (message) => {
    if (message.start) {
      try {
        follower = await follow(message.start);
        for (const type of ['pin', 'unpin', 'peer', 'sync', 'error']) follower.on(type, queue(type));
        port.postMessage({ started: follower.peerId });
      } catch (error) {
        port.postMessage({ failed: errorOf(error) });
      }
      return;
    }
    const { id, method, args } = message;
    try {
      port.postMessage({ id, value: await methods[method](...args) });
    } catch (error) {
      port.postMessage({ id, error: errorOf(error) });
    }
  };
}

// A Web Worker first: Deno's Workers are Web Workers that also have a Node-like `process`.
if (typeof globalThis.WorkerGlobalScope !== 'undefined' && globalThis instanceof globalThis.WorkerGlobalScope) {
  const handle = serve(globalThis);
  globalThis.addEventListener('message', (event) => handle(event.data));
} else if (globalThis.process?.versions?.node) {
  const { parentPort } = await import('node:worker_threads');
  if (parentPort) {
    const handle = serve(parentPort);
    parentPort.on('message', handle);
  }
}
