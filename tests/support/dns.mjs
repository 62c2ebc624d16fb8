// A DNS-over-HTTPS server (RFC 8484) on loopback that answers TXT questions from a table, so
// that a test can give Kubo DNSLink records: Kubo takes custom resolvers as DoH URLs only
// (scripts/start-ipfs sets DNS.Resolvers from PINFOLD_IPFS_DOH and makes Kubo trust the
// server's self-signed certificate through PINFOLD_IPFS_DOH_CA). The messages are RFC 1035's:
// one question per query, TXT answers, NXDOMAIN for names it does not hold.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';

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

/** The body of a DoH request: the POSTed message, or the `dns` parameter of a GET (base64url). */
function readQuery(request) {
  if (request.method === 'GET') {
    const param = new URL(request.url, 'https://localhost').searchParams.get('dns');
    return Promise.resolve(param ? Buffer.from(param, 'base64url') : null);
  }
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    request.on('data', (chunk) => {
      size += chunk.length;
      if (size > 4096) request.destroy(new Error('DNS query too large'));
      else chunks.push(chunk);
    });
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

/**
 * Starts the server on 127.0.0.1 (a free port) with a fresh self-signed certificate for
 * 127.0.0.1; `records` maps names to TXT strings and may change while it runs. Resolves to
 * `{ url, ca, close() }`: the DoH URL, the certificate's file and a stop function.
 */
export async function startDoh(records) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pinfold-doh-'));
  const [ca, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      ca,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const server = https.createServer(
    { cert: fs.readFileSync(ca), key: fs.readFileSync(key) },
    async (request, response) => {
      try {
        const query = await readQuery(request);
        if (!query) throw new Error('no query');
        response.writeHead(200, { 'content-type': 'application/dns-message' });
        response.end(answer(query, records));
      } catch {
        response.writeHead(400);
        response.end();
      }
    },
  );
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    url: `https://127.0.0.1:${port}/dns-query`,
    ca,
    close: () =>
      new Promise((done) => {
        server.closeAllConnections();
        server.close(() => {
          fs.rmSync(dir, { recursive: true, force: true });
          done();
        });
      }),
  };
}
