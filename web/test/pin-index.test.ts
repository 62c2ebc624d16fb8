// The dashboard's pin index: search, sort, status filters, removals and compaction, checked
// against a plain-array model of the same pins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PinIndex, metaText, SORT_KEYS, type PinFields, type Query } from '../src/pin-index.ts';
import { clusterStatus, statusCode } from '../src/status.ts';

function pin(i: number, extra: Partial<PinFields> = {}): PinFields {
  return {
    cid: `bafk${String(i).padStart(6, '0')}`,
    name: `pin-${i % 7}-${i}`,
    metadata: i % 3 === 0 ? { team: i % 2 ? 'Blue' : 'red' } : null,
    timestamp: new Date(Date.UTC(2026, 0, 1) + (i % 50) * 1000).toISOString(),
    allocations: ['a', 'b'].slice(0, i % 3),
    ...extra,
  };
}

const query = (q: Partial<Query> = {}): Query => ({ text: '', sort: 'cid', descending: false, status: '', ...q });

test('metadata reads as sorted key=value pairs', () => {
  assert.equal(metaText({ b: '2', a: '1' }), 'a=1, b=2');
  assert.equal(metaText(null), '');
});

test('search finds text in the name, the metadata or the CID, whatever its case', () => {
  const index = new PinIndex();
  for (let i = 0; i < 100; i++) index.upsert(pin(i));
  const cids = (q: Partial<Query>) => index.rows(index.view(query(q)), 0, 1000).map((r) => r.cid);
  assert.deepEqual(cids({ text: 'PIN-3-10' }), ['bafk000010']);
  assert.deepEqual(
    cids({ text: 'team=blue' }),
    [3, 9, 15, 21, 27, 33, 39, 45, 51, 57, 63, 69, 75, 81, 87, 93, 99].map((i) => pin(i).cid),
  );
  assert.deepEqual(cids({ text: 'BAFK000042' }), ['bafk000042']);
  assert.equal(cids({ text: 'nothing like this' }).length, 0);
});

test('a narrowing search gives what a fresh one gives', () => {
  const index = new PinIndex();
  for (let i = 0; i < 500; i++) index.upsert(pin(i));
  for (const text of ['p', 'pi', 'pin-', 'pin-4', 'pin-4-1', 'pin-4-11']) {
    const narrowed = index.rows(index.view(query({ text, sort: 'name' })), 0, 1000);
    const fresh = new PinIndex();
    for (let i = 0; i < 500; i++) fresh.upsert(pin(i));
    assert.deepEqual(narrowed, fresh.rows(fresh.view(query({ text, sort: 'name' })), 0, 1000), text);
  }
});

test('every sort key orders the rows as the model does, both ways', () => {
  const index = new PinIndex();
  const pins = Array.from({ length: 300 }, (_, i) => pin((i * 37) % 300));
  for (const p of pins) index.upsert(p);
  pins.forEach((p, i) =>
    index.setStatus(p.cid, statusCode(['pinned', 'remote', 'pin_error'][i % 3]), i % 3 === 0 ? 1 : 0),
  );
  const fields: Record<string, (p: PinFields) => string | number> = {
    cid: (p) => p.cid,
    name: (p) => p.name,
    meta: (p) => metaText(p.metadata),
    time: (p) => Date.parse(p.timestamp),
    status: (p) => statusCode(['pinned', 'remote', 'pin_error'][pins.indexOf(p) % 3]),
  };
  for (const sort of SORT_KEYS) {
    const expected = [...pins]
      .sort((a, b) => {
        const [x, y] = [fields[sort](a), fields[sort](b)];
        return x < y ? -1 : x > y ? 1 : a.cid < b.cid ? -1 : 1;
      })
      .map((p) => p.cid);
    const view = index.view(query({ sort }));
    assert.deepEqual(
      index.rows(view, 0, 1000).map((r) => r.cid),
      expected,
      sort,
    );
    const descending = index.view(query({ sort, descending: true }));
    assert.deepEqual(
      index.rows(descending, 0, 1000).map((r) => r.cid),
      [...expected].reverse(),
      `${sort} descending`,
    );
  }
});

test('rows page through a view, and a status filter keeps one status', () => {
  const index = new PinIndex();
  for (let i = 0; i < 50; i++) {
    index.upsert(pin(i));
    index.setStatus(pin(i).cid, statusCode(i < 10 ? 'pin_error' : 'pinned'), 0);
  }
  const view = index.view(query({ status: 'pin_error' }));
  assert.equal(view.slots.length, 10);
  assert.deepEqual(
    index.rows(view, 8, 5).map((r) => r.cid),
    [pin(8).cid, pin(9).cid],
  );
  assert.equal(index.rows(view, 0, 1)[0].status, 'pin_error');
  assert.deepEqual(index.statusCounts(), { counts: { pin_error: 10, pinned: 40 }, unknown: 0 });
});

test('removals leave the views, and compaction keeps every live pin findable', () => {
  const index = new PinIndex();
  const n = 5000;
  for (let i = 0; i < n; i++) index.upsert(pin(i));
  index.setStatus(pin(4999).cid, statusCode('pinned'), 2);
  for (let i = 0; i < n; i += 2) assert.ok(index.remove(pin(i).cid));
  assert.equal(index.remove(pin(0).cid), false);
  assert.equal(index.size, n / 2);
  assert.deepEqual(index.statusCounts(), { counts: { pinned: 1 }, unknown: n / 2 - 1 });
  const rows = index.rows(index.view(query()), 0, n);
  assert.deepEqual(
    rows.map((r) => r.cid),
    Array.from({ length: n / 2 }, (_, i) => pin(2 * i + 1).cid),
  );
  assert.equal(rows.at(-1)?.status, 'pinned');
  assert.equal(rows.at(-1)?.pinnedOn, 2);
  const { cids, next } = index.cidsFrom(0, 3);
  assert.deepEqual(cids, [pin(1).cid, pin(3).cid, pin(5).cid]);
  assert.deepEqual(index.cidsFrom(next, 1).cids, [pin(7).cid]);
});

test('an update changes the row, not the count; a view goes stale on changes', () => {
  const index = new PinIndex();
  assert.ok(index.upsert(pin(1)));
  const view = index.view(query());
  assert.ok(index.current(view));
  assert.equal(index.upsert(pin(1, { name: 'renamed' })), false);
  assert.equal(index.size, 1);
  assert.ok(!index.current(view));
  assert.equal(index.rows(index.view(query({ text: 'renamed' })), 0, 1)[0].name, 'renamed');
  assert.deepEqual(index.statusCounts(), { counts: {}, unknown: 1 });
  const statusView = index.view(query({ sort: 'status' }));
  index.setStatus(pin(1).cid, statusCode('pinning'), 0);
  assert.ok(!index.current(statusView));
  index.setStatus(pin(1).cid, statusCode('pinned'), 1);
  assert.deepEqual(index.statusCounts(), { counts: { pinned: 1 }, unknown: 0 });
});

test("the cluster's status of a pin is the one that most needs attention", () => {
  assert.deepEqual(clusterStatus({ a: { status: 'remote' }, b: { status: 'pinned' } }), {
    code: statusCode('pinned'),
    pinned: 1,
  });
  assert.deepEqual(clusterStatus({ a: { status: 'pinned' }, b: { status: 'pin_error' } }), {
    code: statusCode('pin_error'),
    pinned: 1,
  });
  assert.deepEqual(clusterStatus({ a: { status: 'pinned' }, b: { status: 'pinned' } }), {
    code: statusCode('pinned'),
    pinned: 2,
  });
  assert.equal(clusterStatus({}).code, 0);
});
