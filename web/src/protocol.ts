// What the page and the dashboard's Worker say to each other. The page asks (`Request`,
// answered by `Reply` with the same id); the Worker also pushes the cluster's overview
// once a second and says when the rows on screen may have changed.
import type { GlobalPinInfo, Metric, PeerSummary, PeerView, Pin, SyncState } from 'pinfold';
import type { Query, Row } from './pin-index.ts';
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

export type Request =
  | { id: number; op: 'connect'; options: ConnectOptions }
  /** Makes `query` the current view; answers `{ total }`. */
  | { id: number; op: 'view'; query: Query }
  /** Rows of the current view; answers `RowsAnswer`. */
  | { id: number; op: 'rows'; start: number; count: number }
  /** A pin and its per-peer statuses; answers `PinDetail`. */
  | { id: number; op: 'pin'; cid: string }
  | { id: number; op: 'close' };

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

export interface SerializedError {
  name: string;
  code?: string;
  message: string;
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

export type Message =
  | { id: number; value: unknown }
  | { id: number; error: SerializedError }
  | { overview: Overview }
  /** The current view was recomputed (`total` rows) or statuses on it changed. */
  | { viewChanged: { total: number } };
