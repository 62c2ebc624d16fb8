// CIDs for tests, made without a daemon.
import { createHash } from 'node:crypto';

const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';

/** RFC 4648 base32, lower case, without padding (multibase `b`). */
function base32(bytes) {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

/** The binary CIDv1 (sha2-256) of `block` with multicodec `codec` (0x55 raw, 0x70 dag-pb). */
export function cidBytes(codec, block) {
  return Buffer.concat([Buffer.from([0x01, codec, 0x12, 0x20]), createHash('sha256').update(block).digest()]);
}

/** A binary CID's text form (multibase `b`). */
export function cidText(bytes) {
  return 'b' + base32(bytes);
}

/** The CIDv1 (raw codec, sha2-256) of a block holding `content`. */
export function rawCid(content) {
  return cidText(cidBytes(0x55, content));
}

/**
 * The CIDv1 (raw codec, identity multihash) of `content` (at most 64 bytes): the block is
 * the CID itself, so a daemon pins it at once, with no block to fetch.
 */
export function identityCid(content) {
  const bytes = Buffer.from(content);
  if (bytes.length > 64) throw new Error(`identity CIDs here hold at most 64 bytes: ${content}`);
  return cidText(Buffer.concat([Buffer.from([0x01, 0x55, 0x00, bytes.length]), bytes]));
}
