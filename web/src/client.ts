// The page's side of the dashboard Worker: calls with answers, and the pushed overview.
import type { Query } from './pin-index.ts';
import type { ConnectOptions, Message, Overview, PinDetail, Request, RowsAnswer, SerializedError } from './protocol.ts';

type Pending = { resolve: (value: unknown) => void; reject: (error: SerializedError) => void };
// Every request but its id.
type Call = Request extends infer R ? (R extends Request ? Omit<R, 'id'> : never) : never;

export class DashboardClient {
  #worker = new Worker(new URL('./dashboard-worker.ts', import.meta.url), {
    type: 'module',
    name: 'pinfold-dashboard',
  });
  #pending = new Map<number, Pending>();
  #next = 0;
  onOverview: (overview: Overview) => void = () => {};
  onViewChanged: (total: number) => void = () => {};

  constructor() {
    this.#worker.addEventListener('message', (event: MessageEvent<Message>) => {
      const message = event.data;
      if ('overview' in message) this.onOverview(message.overview);
      else if ('viewChanged' in message) this.onViewChanged(message.viewChanged.total);
      else {
        const pending = this.#pending.get(message.id);
        this.#pending.delete(message.id);
        if ('error' in message) pending?.reject(message.error);
        else pending?.resolve(message.value);
      }
    });
  }

  #call<T>(call: Call): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.#worker.postMessage({ ...call, id });
    });
  }

  /** Joins the cluster; rejects with the follower's error (`code` says which). */
  connect(options: ConnectOptions): Promise<{ peerId: string }> {
    return this.#call({ op: 'connect', options });
  }

  view(query: Query): Promise<{ total: number }> {
    return this.#call({ op: 'view', query });
  }

  rows(start: number, count: number): Promise<RowsAnswer> {
    return this.#call({ op: 'rows', start, count });
  }

  pin(cid: string): Promise<PinDetail> {
    return this.#call({ op: 'pin', cid });
  }

  /** Leaves the swarm and ends the Worker. */
  async close(): Promise<void> {
    await Promise.race([this.#call({ op: 'close' }).catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
    this.#worker.terminate();
    for (const pending of this.#pending.values())
      pending.reject({ name: 'ClosedError', code: 'CLOSED', message: 'disconnected' });
    this.#pending.clear();
  }
}
