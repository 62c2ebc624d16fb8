// The package as a Node user imports it: by name, through its exports map.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterTopic, normalizeSecret, decodePin, decodeMetric } from 'pinfold';

const hex = (s) => Uint8Array.from(s.match(/../g), (b) => parseInt(b, 16));

test('topic of the default cluster', async () => {
  assert.equal(await clusterTopic(), 'fzhnp2UwTBkgNabrJi1VanzwgN');
  assert.notEqual(await clusterTopic('other'), await clusterTopic());
});

test('secrets are checked with a message that says what is wrong', async () => {
  const secret = '0123456789abcdef'.repeat(4);
  assert.equal(await normalizeSecret(secret.toUpperCase()), secret);
  assert.equal(await normalizeSecret(`/key/swarm/psk/1.0.0/\n/base16/\n${secret}\n`), secret);
  await assert.rejects(normalizeSecret('abcd'), /must be 32 bytes \(64 hexadecimal characters\)/);
});

test('a Go state value decodes to the REST API pin JSON', async () => {
  const value = hex(
    '0a221220c3c4733ec8affd06cf9e9ff50ffc6bcd2ec85a6170004bb709669c31de94391a' +
      '10011a26002408011220' +
      '0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20' +
      '20013220080410061a04646f63734080f2d6ca0652060a016112013152060a0162120132' +
      '38808bd2bb06',
  );
  const pin = await decodePin(value);
  assert.equal(pin.cid, 'QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR');
  assert.equal(pin.name, 'docs');
  assert.deepEqual(pin.metadata, { a: '1', b: '2' });
  assert.deepEqual(pin.allocations, ['12D3KooW9tJMax94Lrqw7Y5Qw36viGQAS2gTEPQ5Wg1vTk7xPfQs']);
  assert.equal(pin.expire_at, '2026-01-01T00:00:00Z');
  await assert.rejects(decodePin(new Uint8Array([0xff])), /malformed pin protobuf/);
});

test('a Go metric decodes', async () => {
  const metric = await decodeMetric(
    hex(
      '86a16ea9667265657370616365a170da0026002408011220' +
        '0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20' +
        'a176ac313037333734313832343030a165d318166885bc7aac00a164c3a177d30000001900000000',
    ),
  );
  assert.equal(metric.name, 'freespace');
  assert.equal(metric.value, '107374182400');
  assert.equal(metric.valid, true);
});
