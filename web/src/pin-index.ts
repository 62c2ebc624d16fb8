// The dashboard's index of the pinset: a compact column store of what the pin table shows
// (CID, name, metadata, time, allocations, the cluster's status), with search and sort
// that stay fast at a million pins. It runs in the dashboard's Worker, never on the page.
//
// Pins live in slots; a removed pin's slot is left empty until a compaction. Sorted orders
// are cached per sort key and rebuilt only when the index changed; a search that narrows
// the previous one (the same query plus more text) filters the previous result only.
import { STATUSES, UNKNOWN, statusCode, statusOf, type Status } from './status.ts';

/** The fields of a pin (ipfs-cluster's pin JSON) the index keeps. */
export interface PinFields {
  cid: string;
  name: string;
  metadata: Record<string, string> | null;
  /** RFC 3339. */
  timestamp: string;
  allocations: string[];
}

export type SortKey = 'time' | 'cid' | 'name' | 'meta' | 'status';
export const SORT_KEYS: readonly SortKey[] = ['time', 'cid', 'name', 'meta', 'status'];

export interface Query {
  /** Case-insensitive text found in the CID, the name or the metadata ("key=value"). */
  text: string;
  sort: SortKey;
  descending: boolean;
  /** Only pins whose cluster status is this one; "" for any. */
  status: string;
}

/** One row of the pin table. */
export interface Row {
  cid: string;
  name: string;
  /** "key=value, ..." sorted by key. */
  meta: string;
  /** Unix milliseconds (NaN when the pin has no time). */
  time: number;
  allocations: number;
  /** The cluster's status, once known. */
  status?: Status;
  /** How many peers reported it pinned. */
  pinnedOn: number;
}

/** The result of a query: slots in display order, as of an index version. */
export interface View {
  query: Query;
  slots: Uint32Array;
  version: number;
  statusVersion: number;
}

const GROWTH = 1.5;
const MIN_COMPACTION = 1024;

/** "key=value, ..." of a pin's metadata, sorted by key ("" when it has none). */
export function metaText(metadata: Record<string, string> | null): string {
  if (!metadata) return '';
  return Object.keys(metadata)
    .sort()
    .map((key) => `${key}=${metadata[key]}`)
    .join(', ');
}

export class PinIndex {
  #slotOf = new Map<string, number>();
  #cids: string[] = [];
  #names: string[] = [];
  #metas: string[] = [];
  /** Lower-cased "name\0meta\0cid": what a search looks in. */
  #haystacks: string[] = [];
  #times = new Float64Array(1024);
  #allocations = new Uint16Array(1024);
  #statuses = new Uint8Array(1024);
  #pinnedOn = new Uint16Array(1024);
  #empty = 0;
  /** Live pins by status code (index 0: not known yet), kept as pins and statuses change. */
  #perStatus = new Array<number>(STATUSES.length + 1).fill(0);
  #orders = new Map<SortKey, { version: number; statusVersion: number; order: Uint32Array }>();
  #last: View | undefined;
  /** Bumped whenever a pin is added, changed or removed. */
  version = 0;
  /** Bumped whenever a pin's status changes. */
  statusVersion = 0;

  /** Pins in the index. */
  get size(): number {
    return this.#slotOf.size;
  }

  has(cid: string): boolean {
    return this.#slotOf.has(cid);
  }

  /** Adds `pin`, or updates it when the index has its CID; returns whether it was new. */
  upsert(pin: PinFields): boolean {
    let slot = this.#slotOf.get(pin.cid);
    const added = slot === undefined;
    if (slot === undefined) {
      slot = this.#cids.length;
      this.#grow(slot + 1);
      this.#slotOf.set(pin.cid, slot);
      this.#cids.push(pin.cid);
      this.#statuses[slot] = UNKNOWN;
      this.#pinnedOn[slot] = 0;
      this.#perStatus[UNKNOWN]++;
    }
    const meta = metaText(pin.metadata);
    this.#names[slot] = pin.name;
    this.#metas[slot] = meta;
    this.#haystacks[slot] = `${pin.name}\0${meta}\0${pin.cid}`.toLowerCase();
    this.#times[slot] = Date.parse(pin.timestamp);
    this.#allocations[slot] = Math.min(pin.allocations?.length ?? 0, 0xffff);
    this.version++;
    return added;
  }

  /** Removes the pin of `cid`; returns whether the index had it. */
  remove(cid: string): boolean {
    const slot = this.#slotOf.get(cid);
    if (slot === undefined) return false;
    this.#slotOf.delete(cid);
    this.#perStatus[this.#statuses[slot]]--;
    this.#cids[slot] = '';
    this.#names[slot] = '';
    this.#metas[slot] = '';
    this.#haystacks[slot] = '';
    this.#empty++;
    this.version++;
    if (this.#empty >= MIN_COMPACTION && this.#empty * 4 >= this.#cids.length) this.#compact();
    return true;
  }

  /** Sets the cluster status of `cid` (a code of status.ts) and how many peers pinned it. */
  setStatus(cid: string, code: number, pinnedOn: number): void {
    const slot = this.#slotOf.get(cid);
    if (slot === undefined) return;
    if (this.#statuses[slot] !== code || this.#pinnedOn[slot] !== pinnedOn) {
      this.#perStatus[this.#statuses[slot]]--;
      this.#perStatus[code]++;
      this.#statuses[slot] = code;
      this.#pinnedOn[slot] = Math.min(pinnedOn, 0xffff);
      this.statusVersion++;
    }
  }

  /** Up to `count` CIDs in slot order from slot `from`, and the slot to go on from. */
  cidsFrom(from: number, count: number): { cids: string[]; next: number } {
    const cids: string[] = [];
    let slot = from;
    for (; slot < this.#cids.length && cids.length < count; slot++) {
      if (this.#cids[slot] !== '') cids.push(this.#cids[slot]);
    }
    return { cids, next: slot };
  }

  /** Every CID in the index. */
  cids(): IterableIterator<string> {
    return this.#slotOf.keys();
  }

  /** How many pins stand in each cluster status, and how many are not known yet. */
  statusCounts(): { counts: Partial<Record<Status, number>>; unknown: number } {
    const counts: Partial<Record<Status, number>> = {};
    STATUSES.forEach((status, i) => {
      if (this.#perStatus[i + 1] > 0) counts[status] = this.#perStatus[i + 1];
    });
    return { counts, unknown: this.#perStatus[UNKNOWN] };
  }

  /** The pins that match `query`, in its order. */
  view(query: Query): View {
    const needle = query.text.trim().toLowerCase();
    const statusFilter = query.status === '' ? UNKNOWN : statusCode(query.status);
    const last = this.#last;
    const narrows =
      last !== undefined &&
      last.version === this.version &&
      last.statusVersion === this.statusVersion &&
      last.query.sort === query.sort &&
      last.query.status === query.status &&
      needle.includes(last.query.text.trim().toLowerCase());
    const source = narrows ? last.slots : this.#order(query.sort);
    const slots = new Uint32Array(source.length);
    let n = 0;
    for (const slot of source) {
      if (this.#cids[slot] === '') continue;
      if (statusFilter !== UNKNOWN && this.#statuses[slot] !== statusFilter) continue;
      if (needle !== '' && !this.#haystacks[slot].includes(needle)) continue;
      slots[n++] = slot;
    }
    const view = { query, slots: slots.slice(0, n), version: this.version, statusVersion: this.statusVersion };
    this.#last = view;
    return view;
  }

  /** Whether `view` shows the index as it is now. */
  current(view: View): boolean {
    const statusMatters = view.query.sort === 'status' || view.query.status !== '';
    return view.version === this.version && (!statusMatters || view.statusVersion === this.statusVersion);
  }

  /** Rows `start` to `start + count` of `view`, as the index has them now. */
  rows(view: View, start: number, count: number): Row[] {
    const rows: Row[] = [];
    const total = view.slots.length;
    for (let i = Math.max(0, start); i < Math.min(total, start + count); i++) {
      const slot = view.slots[view.query.descending ? total - 1 - i : i];
      if (this.#cids[slot] === '') continue;
      rows.push({
        cid: this.#cids[slot],
        name: this.#names[slot],
        meta: this.#metas[slot],
        time: this.#times[slot],
        allocations: this.#allocations[slot],
        status: statusOf(this.#statuses[slot]),
        pinnedOn: this.#pinnedOn[slot],
      });
    }
    return rows;
  }

  /** Every live slot in ascending order of `key` (ties: by CID), cached until a change. */
  #order(key: SortKey): Uint32Array {
    const cached = this.#orders.get(key);
    if (
      cached &&
      cached.version === this.version &&
      (key !== 'status' || cached.statusVersion === this.statusVersion)
    ) {
      return cached.order;
    }
    const order = Uint32Array.from(this.#slotOf.values());
    const cids = this.#cids;
    const byCid = (a: number, b: number) => (cids[a] < cids[b] ? -1 : cids[a] > cids[b] ? 1 : 0);
    const byText = (column: string[]) => (a: number, b: number) =>
      column[a] < column[b] ? -1 : column[a] > column[b] ? 1 : byCid(a, b);
    const byNumber = (column: ArrayLike<number>) => (a: number, b: number) =>
      (column[a] || 0) - (column[b] || 0) || byCid(a, b);
    const compare = {
      time: byNumber(this.#times),
      cid: byCid,
      name: byText(this.#names),
      meta: byText(this.#metas),
      // Unknown statuses (0) last.
      status: byNumber(Array.from(this.#statuses, (code) => (code === UNKNOWN ? 0xff : code))),
    }[key];
    order.sort(compare);
    this.#orders.set(key, { version: this.version, statusVersion: this.statusVersion, order });
    return order;
  }

  #grow(slots: number): void {
    if (slots <= this.#times.length) return;
    const capacity = Math.ceil(Math.max(slots, this.#times.length * GROWTH));
    const grown = <T extends Float64Array | Uint16Array | Uint8Array>(array: T, make: (n: number) => T): T => {
      const bigger = make(capacity);
      bigger.set(array);
      return bigger;
    };
    this.#times = grown(this.#times, (n) => new Float64Array(n));
    this.#allocations = grown(this.#allocations, (n) => new Uint16Array(n));
    this.#statuses = grown(this.#statuses, (n) => new Uint8Array(n));
    this.#pinnedOn = grown(this.#pinnedOn, (n) => new Uint16Array(n));
  }

  /** Moves the live pins down over the empty slots. */
  #compact(): void {
    let to = 0;
    for (let from = 0; from < this.#cids.length; from++) {
      const cid = this.#cids[from];
      if (cid === '') continue;
      this.#cids[to] = cid;
      this.#names[to] = this.#names[from];
      this.#metas[to] = this.#metas[from];
      this.#haystacks[to] = this.#haystacks[from];
      this.#times[to] = this.#times[from];
      this.#allocations[to] = this.#allocations[from];
      this.#statuses[to] = this.#statuses[from];
      this.#pinnedOn[to] = this.#pinnedOn[from];
      this.#slotOf.set(cid, to);
      to++;
    }
    for (const column of [this.#cids, this.#names, this.#metas, this.#haystacks]) column.length = to;
    this.#empty = 0;
    this.#orders.clear();
    this.#last = undefined;
    this.version++;
  }
}
