// The dashboard's page: the connection panel, then the cluster's overview, peers, pins
// (a virtualized table over the Worker's index), live activity and the operator's actions.
// State lives here; every change re-renders with lit-html, which touches only what changed.
import { html, nothing, render, type TemplateResult } from 'lit';
import type { PeerView } from 'pinfold';
import { formatBytes, formatCount, freeSpaceBars, pinsOverTime, statusBars } from './charts.ts';
import { DashboardClient } from './client.ts';
import {
  EMPTY_FORM,
  explain,
  fromFragment,
  fromServed,
  mixedContentProblem,
  recall,
  remember,
  toOptions,
  type ConnectionForm,
  type ServedDefaults,
} from './connection.ts';
import type { Query, Row, SortKey } from './pin-index.ts';
import type { JoinError } from './connection.ts';
import type { Overview, PinDetail } from './protocol.ts';
import { RestApi, type PinRequest, type RestAccess } from './rest.ts';
import { STATUSES, statusLabel, statusTone } from './status.ts';

const TABS = ['overview', 'peers', 'pins', 'activity', 'operate'] as const;
type Tab = (typeof TABS)[number];
const ROW_HEIGHT = 36;
/** Browsers cap an element's height near 33.5M px: past this, scrolling is scaled. */
const MAX_SPACER = 8_000_000;
/** Rows fetched around the screen, so that scrolling rarely waits for the Worker. */
const OVERSCAN = 40;
const SEARCH_DEBOUNCE_MS = 120;
/** ipfs-cluster's default REST API address. */
const DEFAULT_REST_API = 'http://127.0.0.1:9094';

const shortId = (id: string) => (id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id);
const ago = (ms: number) => {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
};
const time = (ms: number) => (Number.isFinite(ms) && ms > 0 ? new Date(ms).toLocaleString() : '–');
const badge = (status: string | undefined) =>
  html`<span class="badge tone-${statusTone(status)}">${statusLabel(status)}</span>`;

interface DetailState {
  cid: string;
  data?: PinDetail;
  error?: string;
}

export class App {
  #root: HTMLElement;
  #client: DashboardClient | undefined;
  #phase: 'disconnected' | 'connecting' | 'connected' = 'disconnected';
  #form: ConnectionForm = { ...EMPTY_FORM };
  #formError = '';
  #servedByPeer = false;
  #tab: Tab = 'overview';
  #overview: Overview | undefined;
  #query: Query = { text: '', sort: 'time', descending: true, status: '' };
  #total = 0;
  #rows = new Map<number, Row>();
  #asked = { start: -1, end: -1 };
  #searchTimer: ReturnType<typeof setTimeout> | undefined;
  #frame = 0;
  #detail: DetailState | undefined;
  #rest: RestAccess = { base: '', basic: '', token: '' };
  #restMessage: { ok: boolean; text: string } | undefined;

  constructor(root: HTMLElement) {
    this.#root = root;
    root.replaceChildren();
    window.addEventListener('keydown', (event: KeyboardEvent) => {
      if (event.key === 'Escape' && this.#detail) this.#closeDetail();
    });
  }

  /** Fills the connection panel (served defaults, remembered fields, then the URL
   * fragment) and joins at once when the fragment gave a secret or the user chose to be
   * remembered. */
  async start(): Promise<void> {
    const served = await fetch('./connect.json', { signal: AbortSignal.timeout(3000) })
      .then((r) =>
        r.ok && r.headers.get('content-type')?.includes('json') ? (r.json() as Promise<ServedDefaults>) : undefined,
      )
      .catch(() => undefined);
    this.#servedByPeer = served !== undefined;
    // A peer that serves the page is also the REST API to operate through.
    this.#rest.base = served ? location.origin : DEFAULT_REST_API;
    const fragment = fromFragment(location.hash);
    const remembered = recall(localStorage);
    this.#form = { ...EMPTY_FORM, ...(served ? fromServed(served) : {}), ...remembered, ...fragment };
    // The secret leaves the address bar (and the history) once read.
    if (location.hash) history.replaceState(null, '', location.pathname + location.search);
    this.#render();
    if ((fragment.secret || remembered.secret) && this.#form.bootstrap) await this.#connect();
  }

  // ----- connection ---------------------------------------------------------------------

  async #connect(): Promise<void> {
    let options;
    try {
      options = toOptions(this.#form);
    } catch (error) {
      this.#formError = (error as Error).message;
      this.#render();
      return;
    }
    remember(localStorage, this.#form);
    const mixed = mixedContentProblem(location.protocol, options.bootstrap);
    this.#phase = 'connecting';
    this.#formError = mixed ?? '';
    this.#render();
    const client = new DashboardClient();
    client.onOverview = (overview) => {
      this.#overview = overview;
      this.#render();
    };
    client.onViewChanged = (total) => {
      this.#total = total;
      this.#rows.clear();
      this.#asked = { start: -1, end: -1 };
      this.#render();
    };
    try {
      await client.connect(options);
    } catch (error) {
      client.close();
      this.#phase = 'disconnected';
      this.#formError = explain(error as JoinError, options.bootstrap, location.protocol);
      this.#render();
      return;
    }
    this.#client = client;
    this.#phase = 'connected';
    this.#formError = '';
    await this.#applyQuery();
  }

  async #disconnect(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    this.#phase = 'disconnected';
    this.#overview = undefined;
    this.#detail = undefined;
    this.#rows.clear();
    this.#total = 0;
    this.#render();
    await client?.close();
  }

  // ----- the pin table -------------------------------------------------------------------

  async #applyQuery(): Promise<void> {
    if (!this.#client) return;
    const { total } = await this.#client.view(this.#query);
    this.#total = total;
    this.#rows.clear();
    this.#asked = { start: -1, end: -1 };
    const scroller = this.#root.querySelector<HTMLElement>('#pin-scroller');
    if (scroller) scroller.scrollTop = 0;
    this.#render();
  }

  #search(text: string): void {
    this.#query = { ...this.#query, text };
    clearTimeout(this.#searchTimer);
    this.#searchTimer = setTimeout(() => this.#applyQuery(), SEARCH_DEBOUNCE_MS);
  }

  #sortBy(sort: SortKey): void {
    const descending = this.#query.sort === sort ? !this.#query.descending : sort === 'time';
    this.#query = { ...this.#query, sort, descending };
    this.#applyQuery();
  }

  /** Where the screen is in the table: the first row (fractional) and the layer's offset. */
  #window(scroller: HTMLElement | null) {
    const viewHeight = scroller?.clientHeight || 480;
    const fullHeight = this.#total * ROW_HEIGHT;
    const spacer = Math.min(fullHeight, MAX_SPACER);
    const top = scroller?.scrollTop ?? 0;
    const first =
      fullHeight <= MAX_SPACER
        ? top / ROW_HEIGHT
        : (top / Math.max(1, spacer - viewHeight)) * Math.max(0, this.#total - viewHeight / ROW_HEIGHT);
    const firstIndex = Math.floor(first);
    return {
      spacer,
      firstIndex,
      count: Math.ceil(viewHeight / ROW_HEIGHT) + 1,
      offset: top - (first - firstIndex) * ROW_HEIGHT,
    };
  }

  /** Asks the Worker for the rows around the screen unless they are at hand. */
  #fetchRows(firstIndex: number, count: number): void {
    if (!this.#client) return;
    const covered = firstIndex >= this.#asked.start && firstIndex + count <= this.#asked.end;
    if (covered) return;
    const start = Math.max(0, firstIndex - OVERSCAN);
    const end = firstIndex + count + OVERSCAN;
    this.#asked = { start, end };
    this.#client.rows(start, end - start).then(
      ({ rows, total }) => {
        if (this.#asked.start !== start) return;
        this.#total = total;
        this.#rows.clear();
        rows.forEach((row, i) => this.#rows.set(start + i, row));
        this.#render();
      },
      // Disconnected meanwhile: the next render asks again, if there is anything to ask.
      () => {
        this.#asked = { start: -1, end: -1 };
      },
    );
  }

  #onScroll = () => {
    cancelAnimationFrame(this.#frame);
    this.#frame = requestAnimationFrame(() => this.#render());
  };

  // ----- pin detail and operator actions ---------------------------------------------------

  async #openDetail(cid: string): Promise<void> {
    this.#detail = { cid };
    this.#render();
    try {
      const data = await this.#client!.pin(cid);
      if (this.#detail?.cid === cid) this.#detail = { cid, data };
    } catch (error) {
      if (this.#detail?.cid === cid) this.#detail = { cid, error: (error as Error).message };
    }
    this.#render();
    this.#root.querySelector<HTMLElement>('#detail-close')?.focus();
  }

  #closeDetail(): void {
    this.#detail = undefined;
    this.#render();
  }

  /** Runs `action` on the REST API and reports how it went (`done` says what came back). */
  async #operate<T>(what: string, action: (api: RestApi) => Promise<T>, done?: (answer: T) => string): Promise<void> {
    this.#restMessage = { ok: true, text: `${what}…` };
    this.#render();
    try {
      const answer = await action(new RestApi(this.#rest));
      this.#restMessage = {
        ok: true,
        text: done?.(answer) ?? `${what}: done. The change reaches this dashboard through the swarm.`,
      };
    } catch (error) {
      this.#restMessage = { ok: false, text: (error as Error).message };
    }
    this.#render();
    if (this.#detail) this.#openDetail(this.#detail.cid);
  }

  // ----- rendering -----------------------------------------------------------------------

  #render(): void {
    render(this.#template(), this.#root);
    if (this.#phase === 'connected' && this.#tab === 'pins') {
      const { firstIndex, count } = this.#window(this.#root.querySelector('#pin-scroller'));
      this.#fetchRows(firstIndex, count);
    }
  }

  #template(): TemplateResult {
    const overview = this.#overview;
    return html`
      <header class="top">
        <h1><span class="logo" aria-hidden="true">◆</span> pinfold</h1>
        ${
          this.#phase === 'connected' && overview
            ? html`<p class="where">
                ${
                  overview.sync?.connected_peers === 0
                    ? html`<span
                        class="badge tone-error"
                        title="No cluster peer is connected: the follower redials with back-off"
                        >reconnecting</span
                      >`
                    : html`<span class="badge tone-${overview.sync?.synced ? 'ok' : 'busy'}"
                        >${overview.sync?.synced ? 'live' : 'syncing'}</span
                      >`
                }
                cluster <strong>${overview.cluster}</strong> · as ${shortId(overview.peerId)}
                <button class="link" @click=${() => this.#disconnect()}>Disconnect</button>
              </p>`
            : nothing
        }
      </header>
      ${this.#phase === 'connected' ? this.#connectedView() : this.#connectionPanel()}
      ${this.#detail ? this.#detailPanel(this.#detail) : nothing}
    `;
  }

  #connectionPanel(): TemplateResult {
    const form = this.#form;
    const field = (key: 'bootstrap' | 'secret' | 'cluster' | 'trusted') => (event: Event) => {
      this.#form = { ...this.#form, [key]: (event.target as HTMLInputElement).value };
    };
    const check = (key: 'keep' | 'remember') => (event: Event) => {
      this.#form = { ...this.#form, [key]: (event.target as HTMLInputElement).checked };
    };
    const busy = this.#phase === 'connecting';
    return html`<main class="connect">
      <form
        class="card"
        @submit=${(event: Event) => {
          event.preventDefault();
          this.#connect();
        }}
        aria-labelledby="connect-title"
      >
        <h2 id="connect-title">Join a cluster</h2>
        <p class="muted">
          The dashboard joins the cluster's private swarm from this browser as a light follower. The secret stays here:
          it is only used to open the encrypted
          connection.${this.#servedByPeer ? ' The peer serving this page filled in its addresses.' : ''}
        </p>
        <label for="bootstrap"
          >Bootstrap addresses
          <span class="muted">(one per line: a peer's /ws or /webrtc-direct multiaddr)</span></label
        >
        <textarea
          id="bootstrap"
          name="bootstrap"
          rows="2"
          .value=${form.bootstrap}
          @input=${field('bootstrap')}
          required
          placeholder="/ip4/127.0.0.1/tcp/9098/ws/p2p/12D3KooW…"
        ></textarea>
        <label for="secret">Cluster secret</label>
        <input
          id="secret"
          name="secret"
          type="password"
          autocomplete="off"
          .value=${form.secret}
          @input=${field('secret')}
          placeholder="64 hex characters, or a swarm.key"
          required
        />
        <details>
          <summary>More options</summary>
          <label for="cluster">Cluster name <span class="muted">(crdt.cluster_name; default ipfs-cluster)</span></label>
          <input
            id="cluster"
            name="cluster"
            .value=${form.cluster}
            @input=${field('cluster')}
            placeholder="ipfs-cluster"
          />
          <label for="trusted"
            >Trusted peers <span class="muted">(one per line, or *; default: the bootstrap peers)</span></label
          >
          <textarea id="trusted" name="trusted" rows="2" .value=${form.trusted} @input=${field('trusted')}></textarea>
          <label class="check"
            ><input id="keep" type="checkbox" .checked=${form.keep} @change=${check('keep')} /> Keep the pinset in this
            browser (IndexedDB), so that a reload resumes</label
          >
        </details>
        <label class="check"
          ><input id="remember" type="checkbox" .checked=${form.remember} @change=${check('remember')} /> Remember these
          settings on this device, the secret included</label
        >
        ${this.#formError ? html`<p class="error" role="alert" id="connect-error">${this.#formError}</p>` : nothing}
        <button type="submit" class="primary" ?disabled=${busy}>${busy ? 'Joining…' : 'Join'}</button>
      </form>
    </main>`;
  }

  #connectedView(): TemplateResult {
    const tabs = { overview: 'Overview', peers: 'Peers', pins: 'Pins', activity: 'Activity', operate: 'Operate' };
    return html` <nav class="tabs" role="tablist" aria-label="Views" @keydown=${(e: KeyboardEvent) => this.#tabKey(e)}>
        ${TABS.map(
          (tab) =>
            html`<button
              role="tab"
              id="tab-${tab}"
              aria-selected=${this.#tab === tab}
              aria-controls="panel"
              tabindex=${this.#tab === tab ? 0 : -1}
              @click=${() => this.#selectTab(tab)}
            >
              ${tabs[tab]}
            </button>`,
        )}
      </nav>
      <main id="panel" role="tabpanel" aria-labelledby="tab-${this.#tab}">
        ${this.#overview?.problems.length ? html`<div class="problems" role="status">${this.#overview.problems.map((p) => html`<p>${p}</p>`)}</div>` : nothing}
        ${{
          overview: () => this.#overviewTab(),
          peers: () => this.#peersTab(),
          pins: () => this.#pinsTab(),
          activity: () => this.#activityTab(),
          operate: () => this.#operateTab(),
        }[this.#tab]()}
      </main>`;
  }

  #selectTab(tab: Tab): void {
    this.#tab = tab;
    this.#render();
  }

  /** Arrow keys, Home and End move between tabs, as in the WAI-ARIA tabs pattern. */
  #tabKey(event: KeyboardEvent): void {
    const at = TABS.indexOf(this.#tab);
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: TABS.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    this.#selectTab(TABS[(to + TABS.length) % TABS.length]);
    this.#root.querySelector<HTMLElement>(`#tab-${this.#tab}`)?.focus();
  }

  #overviewTab(): TemplateResult {
    const o = this.#overview;
    if (!o) return html`<p class="muted">Waiting for the first news from the swarm…</p>`;
    const sync = o.sync;
    const alive = o.peers.filter((p) => p.alive).length;
    const pins = sync?.pins ?? o.indexed;
    const known = Object.values(o.statusCounts).reduce((a, b) => a + (b ?? 0), 0);
    const progressMax = sync ? sync.merged + sync.pending + sync.in_flight : 0;
    const names = new Map(o.peers.map((p) => [p.id, p.name]));
    return html`<section class="cards" aria-label="Cluster overview">
        <div class="card stat">
          <h2>Peers alive</h2>
          <p class="big" id="peers-alive">${alive}</p>
          <p class="muted">of ${o.peers.length} seen</p>
        </div>
        <div class="card stat">
          <h2>Pins</h2>
          <p class="big" id="pin-count">${formatCount(pins)}</p>
          <p class="muted">${o.caughtUp ? 'all in the table' : `${formatCount(o.indexed)} in the table so far`}</p>
        </div>
        <div class="card stat">
          <h2>CRDT</h2>
          <p class="big">height ${formatCount(sync?.height ?? 0)}</p>
          <p class="muted">
            ${sync?.heads.length ?? 0}
            head${sync?.heads.length === 1 ? '' : 's'}${sync?.snapshot ? ` · snapshot at height ${formatCount(sync.snapshot.height)}` : ''}
          </p>
        </div>
        <div class="card stat">
          <h2>Sync</h2>
          ${
            sync?.synced
              ? html`<p class="big ok">in sync</p>
                  <p class="muted">${formatCount(sync.merged)} deltas merged this session</p>`
              : html`<p class="big busy">syncing</p>
                  <progress
                    max=${Math.max(1, progressMax)}
                    value=${sync?.merged ?? 0}
                    aria-label="Deltas merged"
                  ></progress>
                  <p class="muted">
                    ${formatCount(sync?.merged ?? 0)} merged, ${formatCount(sync?.pending ?? 0)} pending,
                    ${formatCount(sync?.in_flight ?? 0)} in flight
                  </p>`
          }
        </div>
      </section>
      <section class="card" aria-labelledby="status-title">
        <h2 id="status-title">
          Pin statuses
          <span class="muted"
            >(the cluster's status of each pin: the one that most needs attention among its peers)</span
          >
        </h2>
        <ul class="legend" id="status-counts">
          ${STATUSES.filter((s) => o.statusCounts[s]).map((s) => html`<li><button class="link" @click=${() => this.#filterStatus(s)}>${badge(s)} ${formatCount(o.statusCounts[s]!)}</button></li>`)}
          ${o.statusUnknown ? html`<li>${badge(undefined)} ${formatCount(o.statusUnknown)} <span class="muted">(being asked, ${formatCount(known)} known)</span></li>` : nothing}
        </ul>
      </section>
      <section class="charts">
        <div class="card">
          <h2>Pins over time</h2>
          ${pinsOverTime(o.history)}
        </div>
        <div class="card">
          <h2>Statuses on each peer</h2>
          ${statusBars(o.summaries.filter((s) => s.statuses).map((s) => ({ label: s.peername || names.get(s.peer) || shortId(s.peer), statuses: s.statuses! })))}
        </div>
        <div class="card">
          <h2>Free space per peer</h2>
          ${freeSpaceBars((o.metrics.freespace ?? []).map((m) => ({ label: names.get(m.peer) || shortId(m.peer), bytes: Number(m.value) })))}
        </div>
      </section>
      <section class="card" aria-labelledby="heads-title">
        <h2 id="heads-title">Heads</h2>
        <ul class="mono">
          ${(sync?.heads ?? []).map((h) => html`<li>${h.cid} <span class="muted">height ${h.height}</span></li>`)}
        </ul>
      </section>`;
  }

  #filterStatus(status: string): void {
    this.#tab = 'pins';
    this.#query = { ...this.#query, status };
    this.#applyQuery();
  }

  #peersTab(): TemplateResult {
    const o = this.#overview;
    if (!o) return html`<p class="muted">Waiting for the first pings…</p>`;
    const metric = (name: string, peer: string) => o.metrics[name]?.find((m) => m.peer === peer)?.value;
    const summary = (peer: string) => o.summaries.find((s) => s.peer === peer);
    /** The peer's tags as `name=value`, from its `tag:<name>` metrics (the informer's tags). */
    const tagNames = Object.keys(o.metrics)
      .filter((name) => name.startsWith('tag:'))
      .sort();
    const tags = (peer: string) =>
      tagNames.flatMap((name) => {
        const value = metric(name, peer);
        return value ? [`${name.slice('tag:'.length)}=${value}`] : [];
      });
    const roles = (p: PeerView) => [p.role || 'peer', ...(p.trusted ? ['trusted'] : [])];
    const peers = [...o.peers].sort((a, b) => Number(b.alive) - Number(a.alive) || a.name.localeCompare(b.name));
    return html`<section class="card">
      <h2>
        Peers
        <span class="muted"
          >(${peers.filter((p) => p.alive).length} alive of ${peers.length}; from their ping metrics)</span
        >
      </h2>
      <div class="table-scroll">
        <table class="peers" id="peers-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Role</th>
              <th scope="col">State</th>
              <th scope="col">Free space</th>
              <th scope="col">Pin queue</th>
              <th scope="col">Tags</th>
              <th scope="col">Statuses</th>
              <th scope="col">Addresses</th>
            </tr>
          </thead>
          <tbody>
            ${peers.map((p) => {
              const free = metric('freespace', p.id);
              const peerTags = tags(p.id);
              const s = summary(p.id);
              return html`<tr class=${p.alive ? '' : 'silent'}>
                <th scope="row">
                  <span class="peer-name">${p.name || '(unnamed)'}</span><br /><span class="mono muted" title=${p.id}
                    >${shortId(p.id)}</span
                  >
                </th>
                <td>${roles(p).map((r) => html`<span class="tag">${r}</span> `)}</td>
                <td>
                  ${p.alive ? html`<span class="badge tone-ok">alive</span>` : html`<span class="badge tone-error">silent</span>`}
                  ${p.connected ? html`<span class="tag">connected</span>` : nothing}<br /><span class="muted"
                    >seen ${ago(p.last_seen)}</span
                  >
                </td>
                <td>${free === undefined ? '–' : formatBytes(Number(free))}</td>
                <td>${metric('pinqueue', p.id) ?? '–'}</td>
                <td class="tags">
                  ${peerTags.length ? peerTags.map((t) => html`<span class="tag">${t}</span> `) : '–'}
                </td>
                <td>
                  ${s?.statuses ? Object.entries(s.statuses).map(([k, n]) => html`${badge(k)} ${formatCount(n ?? 0)} `) : s?.error ? html`<span class="muted">${s.error}</span>` : '–'}
                </td>
                <td class="mono small">${p.addresses.map((a) => html`<div>${a}</div>`)}</td>
              </tr>`;
            })}
          </tbody>
        </table>
      </div>
    </section>`;
  }

  #pinsTab(): TemplateResult {
    const scroller = this.#root.querySelector<HTMLElement>('#pin-scroller');
    const { spacer, firstIndex, count, offset } = this.#window(scroller);
    const q = this.#query;
    const sortHeader = (key: SortKey, label: string) => {
      const active = q.sort === key;
      return html`<span
        role="columnheader"
        class="col-${key}"
        aria-sort=${active ? (q.descending ? 'descending' : 'ascending') : 'none'}
      >
        <button class="link" @click=${() => this.#sortBy(key)}>
          ${label}${active ? (q.descending ? ' ▼' : ' ▲') : ''}
        </button></span
      >`;
    };
    const rows: TemplateResult[] = [];
    for (let i = firstIndex; i < Math.min(this.#total, firstIndex + count); i++) {
      const row = this.#rows.get(i);
      rows.push(
        row
          ? html`<div
              role="row"
              class="pin-row"
              aria-rowindex=${i + 2}
              tabindex="0"
              data-cid=${row.cid}
              @click=${() => this.#openDetail(row.cid)}
              @keydown=${(e: KeyboardEvent) => e.key === 'Enter' && this.#openDetail(row.cid)}
            >
              <span role="cell" class="col-name">${row.name || html`<span class="muted">(no name)</span>`}</span>
              <span role="cell" class="col-cid mono" title=${row.cid}>${row.cid}</span>
              <span role="cell" class="col-meta">${row.meta}</span>
              <span role="cell" class="col-status"
                >${badge(row.status)}${row.pinnedOn ? html` <span class="muted">${row.pinnedOn}×</span>` : nothing}</span
              >
              <span role="cell" class="col-time">${time(row.time)}</span>
            </div>`
          : html`<div role="row" class="pin-row loading" aria-rowindex=${i + 2}><span role="cell">…</span></div>`,
      );
    }
    return html`<section class="card pins">
      <div class="pin-tools">
        <label class="sr-only" for="pin-search">Search pins</label>
        <input
          id="pin-search"
          type="search"
          placeholder="Search by name, CID or metadata (key=value)"
          .value=${q.text}
          @input=${(e: Event) => this.#search((e.target as HTMLInputElement).value)}
        />
        <label for="status-filter" class="sr-only">Status</label>
        <select
          id="status-filter"
          @change=${(e: Event) => {
            this.#query = { ...q, status: (e.target as HTMLSelectElement).value };
            this.#applyQuery();
          }}
        >
          <option value="" ?selected=${q.status === ''}>any status</option>
          ${STATUSES.map((s) => html`<option value=${s} ?selected=${q.status === s}>${statusLabel(s)}</option>`)}
        </select>
        <span class="muted" id="pin-total" aria-live="polite"
          >${formatCount(this.#total)} pin${this.#total === 1 ? '' : 's'}</span
        >
      </div>
      <div role="table" aria-label="Pins" aria-rowcount=${this.#total + 1} class="pin-table">
        <div role="row" class="pin-row head" aria-rowindex="1">
          ${sortHeader('name', 'Name')}${sortHeader('cid', 'CID')}${sortHeader('meta', 'Metadata')}${sortHeader('status', 'Status')}${sortHeader('time', 'Added')}
        </div>
        <div id="pin-scroller" class="pin-scroller" @scroll=${this.#onScroll}>
          <div class="spacer" style="height:${spacer}px"></div>
          <div class="rows" role="rowgroup" style="transform:translateY(${offset}px)">${rows}</div>
        </div>
      </div>
      ${this.#total === 0 ? html`<p class="muted">${q.text || q.status ? 'No pin matches.' : 'The pinset is empty (so far).'}</p>` : nothing}
    </section>`;
  }

  #activityTab(): TemplateResult {
    const feed = [...(this.#overview?.feed ?? [])].reverse();
    return html`<section class="card">
      <h2>Live activity</h2>
      ${feed.length === 0 ? html`<p class="muted">Pins added and removed and peers joining and leaving appear here as they happen.</p>` : nothing}
      <ol class="feed" id="feed" aria-live="polite">
        ${feed.map(
          (e) =>
            html`<li class="feed-${e.kind}">
              <time>${new Date(e.time).toLocaleTimeString()}</time>
              ${e.cid ? html`<button class="link" @click=${() => this.#openDetail(e.cid!)}>${e.text}</button>` : e.text}
            </li>`,
        )}
      </ol>
    </section>`;
  }

  #operateTab(): TemplateResult {
    const access = (key: keyof RestAccess) => (event: Event) => {
      this.#rest = { ...this.#rest, [key]: (event.target as HTMLInputElement).value };
    };
    const value = (id: string) => this.#root.querySelector<HTMLInputElement>(`#${id}`)?.value ?? '';
    return html`<section class="card">
        <h2>Operate through a trusted peer's REST API</h2>
        <p class="muted">
          The follower only reads. Changes go through a trusted peer's REST API (ipfs-cluster's), with its credentials.
          They stay in this page and are sent to that API only.
        </p>
        <div class="grid2">
          <label>API address <input id="rest-base" .value=${this.#rest.base} @input=${access('base')} /></label>
          <label
            >Basic auth <span class="muted">(user:password)</span
            ><input
              id="rest-basic"
              type="password"
              autocomplete="off"
              .value=${this.#rest.basic}
              @input=${access('basic')}
          /></label>
          <label
            >or bearer token
            <input
              id="rest-token"
              type="password"
              autocomplete="off"
              .value=${this.#rest.token}
              @input=${access('token')}
          /></label>
        </div>
        <button
          id="rest-check"
          @click=${() =>
            this.#operate(
              'Checking the API',
              (api) => api.id(),
              (peer) => `The API answers: peer ${peer.peername || '(unnamed)'} (${peer.id}).`,
            )}
        >
          Check access
        </button>
      </section>
      <section class="card">
        <h2>Add a pin</h2>
        <form
          class="grid2"
          @submit=${(e: Event) => {
            e.preventDefault();
            const pin: PinRequest = {
              cid: value('op-cid'),
              name: value('op-name'),
              replicationMin: value('op-rmin'),
              replicationMax: value('op-rmax'),
            };
            this.#operate(`Pinning ${pin.cid}`, (api) => api.pin(pin));
          }}
        >
          <label>CID <input id="op-cid" required placeholder="bafy…" /></label>
          <label>Name <input id="op-name" /></label>
          <label>Replication min <input id="op-rmin" inputmode="numeric" placeholder="default" /></label>
          <label>Replication max <input id="op-rmax" inputmode="numeric" placeholder="default" /></label>
          <button type="submit" class="primary">Pin</button>
        </form>
      </section>
      <section class="card">
        <h2>Remove or recover a pin</h2>
        <form class="grid2" @submit=${(e: Event) => e.preventDefault()}>
          <label>CID <input id="op-target" placeholder="bafy…" /></label>
          <span>
            <button
              @click=${() => this.#operate(`Unpinning ${value('op-target')}`, (api) => api.unpin(value('op-target')))}
            >
              Unpin
            </button>
            <button
              @click=${() => this.#operate(`Recovering ${value('op-target')}`, (api) => api.recover(value('op-target')))}
            >
              Recover
            </button>
          </span>
        </form>
      </section>
      ${this.#restMessage ? html`<p class=${this.#restMessage.ok ? 'notice' : 'error'} role="status" id="operate-message">${this.#restMessage.text}</p>` : nothing}`;
  }

  #detailPanel(detail: DetailState): TemplateResult {
    const pin = detail.data?.pin;
    const status = detail.data?.status;
    const names = new Map((this.#overview?.peers ?? []).map((p) => [p.id, p.name]));
    const peer = (id: string) => names.get(id) || shortId(id);
    const never = (t: string | undefined) => !t || t.startsWith('0001-');
    return html`<aside class="detail" role="dialog" aria-modal="false" aria-labelledby="detail-title">
      <header>
        <h2 id="detail-title">${pin?.name || 'Pin'}</h2>
        <button id="detail-close" class="link" @click=${() => this.#closeDetail()} aria-label="Close the pin's details">
          ✕
        </button>
      </header>
      <p class="mono small">${detail.cid}</p>
      ${detail.error ? html`<p class="error">${detail.error}</p>` : nothing}
      ${!detail.data && !detail.error ? html`<p class="muted">Loading…</p>` : nothing}
      ${detail.data && !pin ? html`<p class="muted">This CID is not in the pinset (any more).</p>` : nothing}
      ${
        pin
          ? html`<dl class="options">
              <dt>Mode</dt>
              <dd>${pin.mode}</dd>
              <dt>Replication</dt>
              <dd>min ${pin.replication_factor_min}, max ${pin.replication_factor_max}</dd>
              <dt>Allocations</dt>
              <dd>
                ${pin.allocations.length ? pin.allocations.map((a) => html`<span class="tag" title=${a}>${peer(a)}</span> `) : 'everywhere'}
              </dd>
              ${
                pin.user_allocations?.length
                  ? html`<dt>User allocations</dt>
                      <dd>${pin.user_allocations.map((a) => html`<span class="tag">${peer(a)}</span> `)}</dd>`
                  : nothing
              }
              <dt>Added</dt>
              <dd>${never(pin.timestamp) ? '–' : new Date(pin.timestamp).toLocaleString()}</dd>
              <dt>Expires</dt>
              <dd>${never(pin.expire_at) ? 'never' : new Date(pin.expire_at).toLocaleString()}</dd>
              ${
                pin.metadata
                  ? html`<dt>Metadata</dt>
                      <dd>
                        ${Object.entries(pin.metadata).map(([k, v]) => html`<div><span class="mono">${k}</span> = ${v}</div>`)}
                      </dd>`
                  : nothing
              }
              ${
                pin.origins.length
                  ? html`<dt>Origins</dt>
                      <dd class="mono small">${pin.origins.map((o) => html`<div>${o}</div>`)}</dd>`
                  : nothing
              }
              ${
                pin.reference
                  ? html`<dt>Reference</dt>
                      <dd class="mono small">${pin.reference}</dd>`
                  : nothing
              }
            </dl>`
          : nothing
      }
      <h3>Status on each peer</h3>
      ${detail.data?.statusError ? html`<p class="muted">${detail.data.statusError}</p>` : nothing}
      ${
        status
          ? html`<table class="peer-status" id="peer-status">
              <thead>
                <tr>
                  <th scope="col">Peer</th>
                  <th scope="col">Status</th>
                  <th scope="col">Attempts</th>
                  <th scope="col">Since</th>
                </tr>
              </thead>
              <tbody>
                ${Object.entries(status.peer_map).map(
                  ([id, info]) =>
                    html`<tr>
                      <th scope="row" title=${id}>${info.peername || peer(id)}</th>
                      <td>
                        ${badge(info.status)}${info.error ? html`<div class="error small">${info.error}</div>` : nothing}
                      </td>
                      <td>${info.attempt_count}</td>
                      <td>${never(info.timestamp) ? '–' : new Date(info.timestamp).toLocaleTimeString()}</td>
                    </tr>`,
                )}
              </tbody>
            </table>`
          : nothing
      }
      ${
        pin
          ? html`<p class="actions">
              <button @click=${() => this.#operate(`Recovering ${detail.cid}`, (api) => api.recover(detail.cid))}>
                Recover
              </button>
              <button @click=${() => this.#operate(`Unpinning ${detail.cid}`, (api) => api.unpin(detail.cid))}>
                Unpin
              </button>
              <span class="muted small">through ${this.#rest.base} (credentials in Operate)</span>
            </p>`
          : nothing
      }
      ${this.#restMessage && this.#restMessage.text.includes(detail.cid) ? html`<p class=${this.#restMessage.ok ? 'notice' : 'error'}>${this.#restMessage.text}</p>` : nothing}
    </aside>`;
  }
}
