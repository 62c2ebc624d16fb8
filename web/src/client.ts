// The page's side of the dashboard Worker: calls with answers, and the pushed overview.
import { RpcClient, workerPort } from 'pinfold/rpc';
import type { DashboardMethods } from './dashboard-worker.ts';
import type { Query } from './pin-index.ts';
import type { ConnectOptions, DashboardPushes, Overview, PinDetail, RowsAnswer } from './protocol.ts';

export class DashboardClient {
  #worker = new Worker(new URL('./dashboard-worker.ts', import.meta.url), {
    type: 'module',
    name: 'pinfold-dashboard',
  });
  #rpc = new RpcClient<DashboardMethods, DashboardPushes>(workerPort(this.#worker));
  onOverview: (overview: Overview) => void = () => {};
  onViewChanged: (total: number) => void = () => {};

  constructor() {
    this.#rpc.on('overview', (overview) => this.onOverview(overview));
    this.#rpc.on('viewChanged', (total) => this.onViewChanged(total));
  }

  /** Joins the cluster; rejects with the follower's error (`code` says which). */
  connect(options: ConnectOptions): Promise<{ peerId: string }> {
    return this.#rpc.call('connect', [options]);
  }

  view(query: Query): Promise<{ total: number }> {
    return this.#rpc.call('view', [query]);
  }

  rows(start: number, count: number): Promise<RowsAnswer> {
    return this.#rpc.call('rows', [start, count]);
  }

  pin(cid: string): Promise<PinDetail> {
    return this.#rpc.call('pin', [cid]);
  }

  /** Leaves the swarm and ends the Worker. */
  async close(): Promise<void> {
    await Promise.race([this.#rpc.call('close', []).catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
    this.#worker.terminate();
    this.#rpc.close();
  }
}
