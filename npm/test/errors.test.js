// The one table of error codes: the WebAssembly module's codes, the package's classes and
// the README's table say the same.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { ERROR_CLASSES, errorCodes } from 'pinfold';

const readme = fs.readFileSync(new URL('../README.md', import.meta.url), 'utf8');

/** The README's error table: code → class name. */
function readmeTable() {
  const table = new Map();
  const header = readme.indexOf('| class | code | when |');
  assert.ok(header >= 0, 'the README has the error table');
  for (const row of readme.slice(header).split('\n').slice(2)) {
    if (!row.startsWith('|')) break;
    const [className, codes] = row.split('|').slice(1, 3);
    for (const code of codes.matchAll(/`([A-Z_]+)`/g)) table.set(code[1], className.trim().replaceAll('`', ''));
  }
  return table;
}

test('the package maps every code of the module to a class, and no other', async () => {
  assert.deepEqual(Object.keys(ERROR_CLASSES).sort(), (await errorCodes()).sort());
});

test("the README's table lists every code with its class", async () => {
  const table = readmeTable();
  assert.deepEqual([...table.keys()].sort(), (await errorCodes()).sort());
  for (const [code, className] of table) assert.equal(ERROR_CLASSES[code].name, className, code);
});
