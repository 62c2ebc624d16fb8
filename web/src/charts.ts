// Small SVG charts: pins over time, each peer's statuses, free space per peer. Each has a
// text alternative for screen readers.
import { html, svg, type TemplateResult } from 'lit';
import { STATUSES, statusLabel, statusTone } from './status.ts';

const WIDTH = 320;
const HEIGHT = 120;

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value >= 100 || unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export const formatCount = (n: number) => n.toLocaleString('en');

/** Pins over time, from [time, pins] samples. */
export function pinsOverTime(history: [number, number][]): TemplateResult {
  if (history.length < 2)
    return html`<p class="muted">Pins over time appear once the dashboard is in sync (a sample every 5 s).</p>`;
  const [t0, t1] = [history[0][0], history[history.length - 1][0]];
  const counts = history.map(([, n]) => n);
  const [low, high] = [Math.min(...counts), Math.max(...counts)];
  const span = Math.max(1, high - low);
  const x = (t: number) => ((t - t0) / Math.max(1, t1 - t0)) * (WIDTH - 8) + 4;
  const y = (n: number) => HEIGHT - 16 - ((n - low) / span) * (HEIGHT - 32);
  const points = history.map(([t, n]) => `${x(t).toFixed(1)},${y(n).toFixed(1)}`).join(' ');
  const minutes = Math.round((t1 - t0) / 60_000);
  const label = `Pins over the last ${minutes || '<1'} min: from ${formatCount(counts[0])} to ${formatCount(counts[counts.length - 1])}`;
  return html`<figure class="chart">
    <svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label=${label}>
      ${svg`<polyline class="line" points=${points} />`}
      ${svg`<text x="4" y="12" class="axis">${formatCount(high)}</text>`}
      ${svg`<text x="4" y=${HEIGHT - 2} class="axis">${formatCount(low)}</text>`}
    </svg>
    <figcaption>${label}</figcaption>
  </figure>`;
}

/** One stacked bar per peer: how many pins stand in each status on it. */
export function statusBars(rows: { label: string; statuses: Partial<Record<string, number>> }[]): TemplateResult {
  if (rows.length === 0) return html`<p class="muted">No peer has reported its statuses yet.</p>`;
  return html`<div class="stacked" role="list">
    ${rows.map(({ label, statuses }) => {
      const parts = STATUSES.filter((s) => statuses[s]).map((s) => ({ status: s, n: statuses[s] ?? 0 }));
      const total = parts.reduce((sum, { n }) => sum + n, 0);
      const text = parts.map(({ status, n }) => `${statusLabel(status)} ${formatCount(n)}`).join(', ') || 'no pins';
      return html`<div class="stacked-row" role="listitem" aria-label="${label}: ${text}">
        <span class="stacked-label">${label}</span>
        <span class="stacked-bar">
          ${parts.map(
            ({ status, n }) =>
              html`<span
                class="part tone-${statusTone(status)}"
                style="flex-grow:${n / Math.max(1, total)}"
                title="${statusLabel(status)}: ${formatCount(n)}"
              ></span>`,
          )}
        </span>
        <span class="stacked-text">${text}</span>
      </div>`;
    })}
  </div>`;
}

/** Free space per peer, as bars scaled to the largest. */
export function freeSpaceBars(rows: { label: string; bytes: number }[]): TemplateResult {
  if (rows.length === 0)
    return html`<p class="muted">No peer reports free space (relays and followers without an IPFS daemon do not).</p>`;
  const most = Math.max(...rows.map((r) => r.bytes), 1);
  return html`<div class="bars" role="list">
    ${rows.map(
      ({ label, bytes }) =>
        html`<div class="bar-row" role="listitem" aria-label="${label}: ${formatBytes(bytes)} free">
          <span class="bar-label">${label}</span>
          <span class="bar"><span class="bar-fill" style="width:${((bytes / most) * 100).toFixed(1)}%"></span></span>
          <span class="bar-text">${formatBytes(bytes)}</span>
        </div>`,
    )}
  </div>`;
}
