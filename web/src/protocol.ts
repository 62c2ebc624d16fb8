// What the page and the dashboard's Worker say to each other, over the package's Worker
// calls (`pinfold/rpc`): the page calls the Worker's methods (`DashboardMethods`); the
// Worker pushes the cluster's overview once a second and says when the rows on screen may
// have changed (`DashboardPushes`).
import type { GlobalPinInfo, Metric, PeerSummary, PeerView, Pin, SyncState } from 'pinfold';
import type { Row } from './pin-index.ts';
import type { Status } from './status.ts';

/** How the dashboard joins the cluster. */
export interface ConnectOptions {
  bootstrap: string[];
  secret: string;
  /** The cluster name; default "ipfs-cluster". */
  cluster?: string;
  /** Default: the peers the bootstrap addresses name. */
  trustedPeers?: string[];
  storage: 'memory' | 'indexeddb';
}

export interface RowsAnswer {
  rows: Row[];
  total: number;
}

export interface PinDetail {
  pin: Pin | null;
  status: GlobalPinInfo | null;
  /** Why there is no status (no peer connected, none answered). */
  statusError?: string;
}

export interface FeedEntry {
  /** Unix milliseconds. */
  time: number;
  kind: 'pin' | 'unpin' | 'peer' | 'sync' | 'error';
  text: string;
  cid?: string;
}

/** The cluster as the Worker sees it, pushed once a second. */
export interface Overview {
  peerId: string;
  cluster: string;
  sync: SyncState | null;
  /** Pins in the dashboard's index (what the table shows). */
  indexed: number;
  /** Whether the index caught up with the synced pinset (from then on, changes are live). */
  caughtUp: boolean;
  peers: PeerView[];
  /** The latest live metrics by name: freespace, pinqueue and every tag:<name>. */
  metrics: Record<string, Metric[]>;
  /** Each connected peer's status counts, refreshed every few seconds. */
  summaries: PeerSummary[];
  /** The cluster's status of every pin whose status is known, counted. */
  statusCounts: Partial<Record<Status, number>>;
  statusUnknown: number;
  feed: FeedEntry[];
  /** [Unix milliseconds, pins] samples. */
  history: [number, number][];
  problems: string[];
}

/** What the Worker pushes: the overview once a second, and the current view's row count
 * when it was recomputed or statuses on it changed. */
export interface DashboardPushes {
  overview: Overview;
  viewChanged: number;
  [name: string]: unknown;
}
