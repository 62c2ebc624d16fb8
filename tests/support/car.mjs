// CARv1 files for tests: a `dag/import` of one puts many blocks into Kubo far faster than a
// `block/put` each.

function varint(n) {
  const out = [];
  for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n & 0x7f) | 0x80);
  out.push(n);
  return Buffer.from(out);
}

/** A CARv1 file: a dag-cbor header naming `roots` (binary CIDs), then each [cid, bytes] block. */
export function carFile(roots, blocks) {
  // {"roots": [tag 42 (0x00 + cid)...], "version": 1}, keys in dag-cbor's order.
  const links = roots.map((cid) => Buffer.concat([Buffer.from([0xd8, 0x2a, 0x58, cid.length + 1, 0x00]), cid]));
  const header = Buffer.concat([
    Buffer.from([0xa2, 0x65]),
    Buffer.from('roots'),
    Buffer.from([0x80 + roots.length]),
    ...links,
    Buffer.from([0x67]),
    Buffer.from('version'),
    Buffer.from([0x01]),
  ]);
  return Buffer.concat([
    varint(header.length),
    header,
    ...blocks.flatMap(([cid, bytes]) => [varint(cid.length + bytes.length), cid, bytes]),
  ]);
}
