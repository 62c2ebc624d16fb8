// The dashboard's Worker: runs the light follower, keeps the pin index (so that search and
// sort never run on the page), learns the cluster's status of every pin a batch at a time,
// and pushes an overview of the cluster to the page once a second.
import { follow, type Follower, type Metric, type PeerSummary, type PeerView, type SyncState } from 'pinfold';
import { serve, type Port } from 'pinfold/rpc';
import { PinIndex, type PinFields, type Query, type View } from './pin-index.ts';
import type { ConnectOptions, DashboardPushes, FeedEntry, PinDetail, RowsAnswer } from './protocol.ts';
import { clusterStatus } from './status.ts';

const TICK_MS = 1000;
const SUMMARY_EVERY_MS = 10_000;
const HISTORY_EVERY_MS = 5000;
const HISTORY_LENGTH = 720;
const FEED_LENGTH = 200;
/** CIDs per status request (the exchange takes up to 1000). */
const STATUS_BATCH = 500;
/** A full pass over the pinset's statuses starts again this long after the last one. */
const STATUS_PASS_PAUSE_MS = 30_000;
const STATUS_RETRY_MS = 5000;
/** Statuses of the rows on screen are asked again after this long. */
const VISIBLE_STATUS_MS = 5000;
/** Metrics shown besides the tags (every `tag:<name>` metric received). */
const METRICS = ['freespace', 'pinqueue'];
/** Ticks the index's count may differ from the synced pinset's before it is read again. */
const RELOAD_AFTER_TICKS = 3;

const page: Port = {
  post: (message) => (self as unknown as Worker).postMessage(message),
  listen: (handler) => self.addEventListener('message', (event) => handler((event as MessageEvent).data)),
};
let push = <K extends keyof DashboardPushes & string>(_name: K, _value: DashboardPushes[K]) => {};

const index = new PinIndex();
let follower: Follower | undefined;
let options: ConnectOptions | undefined;
let query: Query = { text: '', sort: 'time', descending: true, status: '' };
let view: View | undefined;
let sync: SyncState | null = null;
let peers: PeerView[] = [];
let metrics: Record<string, Metric[]> = {};
let summaries: PeerSummary[] = [];
let summariesAt = 0;
const feed: FeedEntry[] = [];
const history: [number, number][] = [];
let historyAt = 0;
/** Problems by message, with when each was last seen; shown for PROBLEM_SHOWN_MS. */
const problems = new Map<string, number>();
const PROBLEM_SHOWN_MS = 60_000;
let summarizing = false;
/** Whether the first load of the pinset is done. */
let loaded = false;
/** Whether the sync caught up once: from then on, each pin and unpin goes to the feed. */
let live = false;
let loading = false;
let offTicks = 0;
/** CIDs an event touched while a load ran: the load's pages may be older than the event. */
let touchedWhileLoading: Set<string> | undefined;
/** CIDs whose statuses to ask next (the rows on screen), and when they were last asked. */
const wanted = new Set<string>();
let visible: string[] = [];
let visibleAskedAt = 0;
let closed = false;

/** An error's message, whatever was thrown. */
function messageOf(error: unknown): string {
  return String((error as { message?: unknown } | undefined)?.message ?? error);
}

function note(kind: FeedEntry['kind'], text: string, cid?: string) {
  feed.push({ time: Date.now(), kind, text, cid });
  if (feed.length > FEED_LENGTH) feed.splice(0, feed.length - FEED_LENGTH);
}

function problem(message: string) {
  problems.set(message, Date.now());
}

function recentProblems(now: number): string[] {
  for (const [message, seen] of problems) if (now - seen > PROBLEM_SHOWN_MS) problems.delete(message);
  return [...problems.keys()];
}

/** Asks each connected peer for its status counts, one round at a time. */
async function refreshSummaries() {
  if (!follower || summarizing) return;
  summarizing = true;
  try {
    summaries = await follower.summaries();
  } catch {
    // Not connected to any peer right now: keep the last counts.
  } finally {
    summarizing = false;
  }
}

function peerName(id: string): string {
  return peers.find((p) => p.id === id)?.name || `${id.slice(0, 6)}…${id.slice(-6)}`;
}

function onPin(pin: PinFields) {
  touchedWhileLoading?.add(pin.cid);
  const added = index.upsert(pin);
  if (live) note('pin', `${added ? 'pinned' : 'updated'} ${pin.name || pin.cid}`, pin.cid);
}

function onUnpin({ cid }: { cid: string }) {
  touchedWhileLoading?.add(cid);
  if (index.remove(cid) && live) note('unpin', `unpinned ${cid}`, cid);
}

/** Reads the whole pinset into the index, and drops what is no longer in it. */
async function load() {
  if (!follower || loading) return;
  loading = true;
  touchedWhileLoading = new Set();
  const seen = new Set<string>();
  try {
    for await (const pin of follower.pins({ pageSize: 1000 })) {
      seen.add(pin.cid);
      if (!touchedWhileLoading.has(pin.cid)) index.upsert(pin);
    }
    for (const cid of [...index.cids()]) {
      if (!seen.has(cid) && !touchedWhileLoading.has(cid)) index.remove(cid);
    }
    loaded = true;
  } finally {
    loading = false;
    touchedWhileLoading = undefined;
  }
}

/** Asks statuses a batch at a time: the rows on screen first, then the whole pinset. */
async function crawlStatuses() {
  let from = 0;
  while (!closed && follower) {
    let cids = [...wanted].slice(0, STATUS_BATCH);
    for (const cid of cids) wanted.delete(cid);
    const fromScreen = cids.length > 0;
    if (!fromScreen) {
      const batch = index.cidsFrom(from, STATUS_BATCH);
      cids = batch.cids;
      from = batch.next;
      if (cids.length === 0) {
        from = 0;
        if (index.size === 0) await sleep(STATUS_RETRY_MS, () => wanted.size > 0 || index.size > 0);
        else await sleep(STATUS_PASS_PAUSE_MS, () => wanted.size > 0);
        continue;
      }
    }
    try {
      const before = index.statusVersion;
      for (const info of await follower.statuses(cids)) {
        const { code, pinned } = clusterStatus(info.peer_map);
        index.setStatus(info.cid, code, pinned);
      }
      if (index.statusVersion !== before && view) push('viewChanged', view.slots.length);
    } catch {
      // Not connected to any peer yet, or none answered: try again soon.
      await sleep(STATUS_RETRY_MS, () => false);
    }
  }
}

/** Waits `ms`, or less once `early()` says so (checked every 250 ms). */
async function sleep(ms: number, early: () => boolean) {
  const until = Date.now() + ms;
  while (Date.now() < until && !closed && !early()) await new Promise((r) => setTimeout(r, Math.min(250, ms)));
}

function refreshView(force: boolean) {
  if (!force && view && index.current(view)) return;
  view = index.view(query);
  push('viewChanged', view.slots.length);
}

async function tick() {
  if (!follower || closed) return;
  const now = Date.now();
  try {
    sync = await follower.syncState();
    peers = await follower.peers();
    const names = [...METRICS, ...(await follower.metricNames()).filter((name) => name.startsWith('tag:'))];
    const lists = await Promise.all(names.map((name) => follower!.metrics(name)));
    metrics = Object.fromEntries(names.map((name, i) => [name, lists[i]]));
    if (now - summariesAt >= SUMMARY_EVERY_MS) {
      summariesAt = now;
      refreshSummaries();
    }
  } catch (error) {
    problem(messageOf(error));
  }
  // Events keep the index in step; a count that stays off for a few ticks once synced
  // (events missed while a load ran, say) reads the pinset again.
  offTicks = sync?.synced && index.size !== sync.pins ? offTicks + 1 : 0;
  if (sync && !loading && (!loaded || offTicks >= RELOAD_AFTER_TICKS)) {
    offTicks = 0;
    load().catch((error) => problem(`could not read the pinset: ${messageOf(error)}`));
  }
  if (!live && loaded && !loading && sync?.synced && index.size === sync.pins) {
    live = true;
    note('sync', `synced: ${index.size.toLocaleString('en')} pins${sync.snapshot ? ', from a snapshot' : ''}`);
  }
  // Samples start once caught up, so that the chart shows the cluster's changes, not the sync.
  if (live && now - historyAt >= HISTORY_EVERY_MS) {
    historyAt = now;
    history.push([now, index.size]);
    if (history.length > HISTORY_LENGTH) history.shift();
  }
  if (now - visibleAskedAt >= VISIBLE_STATUS_MS) {
    visibleAskedAt = now;
    for (const cid of visible) wanted.add(cid);
  }
  refreshView(false);
  const { counts, unknown } = index.statusCounts();
  push('overview', {
    peerId: follower.peerId,
    cluster: options?.cluster || 'ipfs-cluster',
    sync,
    indexed: index.size,
    caughtUp: live,
    peers,
    metrics,
    summaries,
    statusCounts: counts,
    statusUnknown: unknown,
    feed: feed.slice(-100),
    history,
    problems: recentProblems(now),
  });
}

async function connect(connectOptions: ConnectOptions): Promise<{ peerId: string }> {
  if (follower) throw new Error('already connected: open a new dashboard worker to join another cluster');
  options = connectOptions;
  const started = await follow({
    bootstrap: connectOptions.bootstrap,
    secret: connectOptions.secret,
    cluster: connectOptions.cluster || undefined,
    trustedPeers: connectOptions.trustedPeers?.length ? connectOptions.trustedPeers : undefined,
    storage: connectOptions.storage,
  });
  follower = started;
  started.on('pin', onPin);
  started.on('unpin', onUnpin);
  started.on('peer', ({ id, joined }) => note('peer', `${peerName(id)} ${joined ? 'joined' : 'left'}`));
  started.on('error', (error) => {
    problem(error.message);
    note('error', error.message);
  });
  const loop = async () => {
    while (!closed) {
      await tick();
      await new Promise((r) => setTimeout(r, TICK_MS));
    }
  };
  loop();
  crawlStatuses();
  return { peerId: started.peerId };
}

async function pinDetail(cid: string): Promise<PinDetail> {
  if (!follower) throw new Error('not connected');
  const pin = await follower.get(cid);
  try {
    const status = await follower.status(cid);
    const { code, pinned } = clusterStatus(status.peer_map);
    index.setStatus(cid, code, pinned);
    return { pin, status };
  } catch (error) {
    return { pin, status: null, statusError: messageOf(error) };
  }
}

/** What the page calls (see `DashboardClient`). */
const methods = {
  connect,
  /** Makes `query` the current view; answers its row count. */
  view: (next: Query): { total: number } => {
    query = next;
    refreshView(true);
    return { total: view!.slots.length };
  },
  /** Rows of the current view. */
  rows: (start: number, count: number): RowsAnswer => {
    if (!view) view = index.view(query);
    const rows = index.rows(view, start, count);
    visible = rows.map((row) => row.cid);
    for (const row of rows) if (row.status === undefined) wanted.add(row.cid);
    return { rows, total: view.slots.length };
  },
  /** A pin and its per-peer statuses. */
  pin: pinDetail,
  close: async (): Promise<void> => {
    closed = true;
    await follower?.close();
  },
};
export type DashboardMethods = typeof methods;

const send = serve(page, methods);
push = (name, value) => send(name, value);
