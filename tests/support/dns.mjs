// A DNS server on loopback that answers TXT questions from a table, so that a test can give
// an IPFS daemon DNSLink records (scripts/start-ipfs points the daemon's resolver at it).
// It speaks the plain UDP protocol of RFC 1035: one question per query, TXT answers, NXDOMAIN
// for names it does not hold.
import dgram from 'node:dgram';

const TYPE_TXT = 16;
const CLASS_IN = 1;
const RCODE_NXDOMAIN = 3;

/** Reads the question of a query: its name (lower case), type and where it ends. */
function question(query) {
  const labels = [];
  let at = 12;
  while (query[at] !== 0) {
    const length = query[at];
    if (length > 63 || at + 1 + length >= query.length) throw new Error('malformed name');
    labels.push(query.subarray(at + 1, at + 1 + length).toString('latin1'));
    at += 1 + length;
  }
  const type = query.readUInt16BE(at + 1);
  return { name: labels.join('.').toLowerCase(), type, end: at + 5 };
}

/** The rdata of a TXT record: each string behind its length byte. */
function txtData(text) {
  const bytes = Buffer.from(text);
  const parts = [];
  let at = 0;
  do {
    const part = bytes.subarray(at, at + 255);
    parts.push(Buffer.from([part.length]), part);
    at += 255;
  } while (at < bytes.length);
  return Buffer.concat(parts);
}

/** The answer to `query` from `records` (name → TXT strings). */
export function answer(query, records) {
  const { name, type, end } = question(query);
  const texts = records.get(name);
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2); // id
  const recursionDesired = query[2] & 0x01;
  header[2] = 0x84 | recursionDesired; // a response, authoritative
  header[3] = 0x80 | (texts ? 0 : RCODE_NXDOMAIN); // recursion available
  header.writeUInt16BE(1, 4);
  const answers = texts && type === TYPE_TXT ? texts : [];
  header.writeUInt16BE(answers.length, 6);
  const answerRecords = answers.map((text) => {
    const data = txtData(text);
    const record = Buffer.alloc(12);
    record.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
    record.writeUInt16BE(TYPE_TXT, 2);
    record.writeUInt16BE(CLASS_IN, 4);
    record.writeUInt32BE(1, 6); // ttl
    record.writeUInt16BE(data.length, 10);
    return Buffer.concat([record, data]);
  });
  return Buffer.concat([header, query.subarray(12, end), ...answerRecords]);
}

/**
 * Starts the server on 127.0.0.1 (a free port); `records` maps names to TXT strings and
 * may change while it runs. Resolves to `{ address: 'host:port', close() }`.
 */
export function startDns(records) {
  const socket = dgram.createSocket('udp4');
  socket.on('message', (query, from) => {
    try {
      socket.send(answer(query, records), from.port, from.address);
    } catch {
      // a malformed query gets no answer, as from any server
    }
  });
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      const { port } = socket.address();
      resolve({ address: `127.0.0.1:${port}`, close: () => new Promise((done) => socket.close(done)) });
    });
  });
}
