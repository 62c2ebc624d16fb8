// The operator view's pin options become ipfs-cluster's query parameters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pinQuery } from '../src/rest.ts';

test("pin options map to POST /pins/{cid}'s query, empty ones left out", () => {
  assert.equal(
    pinQuery({ cid: 'x', name: ' my pin ', replicationMin: '2', replicationMax: ' 3 ' }),
    '?name=my+pin&replication-min=2&replication-max=3',
  );
  assert.equal(pinQuery({ cid: 'x', name: '', replicationMin: '', replicationMax: '-1' }), '?replication-max=-1');
  assert.equal(pinQuery({ cid: 'x', name: '', replicationMin: '', replicationMax: '' }), '');
});
