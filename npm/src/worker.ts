// The follower's side of `spawnWorker`: runs in a Web Worker or a Node worker thread,
// starts a follower when asked, answers calls and pushes its events in batches every
// EVENT_BATCH_MS, so that a sync of many pins does not flood the page. `pin` and `unpin`
// events are pushed only while the page listens to them (`listenToPins`): a sync makes one
// per pin.
import { serializeError } from './errors.js';
import { EVENTS, follow, type EventType, type Follower } from './follower.js';
import { parentPort, serve, type Port } from './rpc.js';
import type { EventBatch } from './spawn.js';
import type { FollowOptions } from './types.js';

const EVENT_BATCH_MS = 50;
const PIN_EVENTS: readonly EventType[] = ['pin', 'unpin'];

/** The methods the Worker serves (see `WorkerFollower`). */
export type WorkerMethods = ReturnType<typeof methodsOn>;
/** What it pushes: the follower's events. */
export type WorkerPushes = { events: EventBatch };

function methodsOn(port: Port) {
  let follower: Follower | undefined;
  let events: EventBatch = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let push: (name: string, value: unknown) => void = () => {};
  const flush = () => {
    timer = undefined;
    const batch = events;
    events = [];
    push('events', batch);
  };
  let stopPins: (() => void)[] = [];
  const live = (): Follower => {
    if (!follower) throw new Error('the follower has not started');
    return follower;
  };
  const forward = (type: EventType) =>
    live().on(type, (value) => {
      events.push([type, type === 'error' ? serializeError(value) : value]);
      timer ??= setTimeout(flush, EVENT_BATCH_MS);
    });
  const methods = {
    start: async (options: Omit<FollowOptions, 'signal'>): Promise<string> => {
      follower = await follow(options as FollowOptions);
      for (const type of EVENTS) if (!PIN_EVENTS.includes(type)) forward(type);
      return follower.peerId;
    },
    listenToPins: (listen: boolean): void => {
      if (listen && stopPins.length === 0) stopPins = PIN_EVENTS.map(forward);
      if (!listen) for (const stop of stopPins.splice(0)) stop();
    },
    pinsPage: (after: string | undefined, limit: number) => live().pinsPage(after, limit),
    get: (cid: string) => live().get(cid),
    statuses: (cids: string[]) => live().statuses(cids),
    summaries: () => live().summaries(),
    peers: () => live().peers(),
    metrics: (name: string) => live().metrics(name),
    metricNames: () => live().metricNames(),
    syncState: () => live().syncState(),
    close: async (): Promise<void> => {
      await follower?.close();
      if (timer !== undefined) {
        clearTimeout(timer);
        flush();
      }
    },
  };
  push = serve(port, methods);
  return methods;
}

const port = await parentPort();
if (port) methodsOn(port);
