// What each part of a .wasm costs: reads a module that kept its name section (as
// scripts/build-npm keeps one per build) and sums the code of each function and each data
// segment by the crate it comes from. A generic function counts for the crate of the type it
// works on (`<libp2p_swarm::Swarm<B> as Stream>::poll_next` is libp2p_swarm's, a
// `drop_in_place<pinfold_core::...>` pinfold_core's). Prints the crates, the largest
// functions, and with two files the difference per crate.
//   node scripts/lib/wasm-audit.mjs [--top N] FILE.wasm [OTHER.wasm]
import { readFileSync } from 'node:fs';

/** Reads an unsigned LEB128 at `at`: [value, next offset]. */
function leb(bytes, at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = bytes[at++];
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, at];
    shift += 7;
  }
}

function text(bytes, at) {
  const [length, start] = leb(bytes, at);
  return [new TextDecoder().decode(bytes.subarray(start, start + length)), start + length];
}

/** The module's functions and data segments: [{ name, bytes, kind }], and its total size. */
export function items(bytes) {
  const sizes = new Map();
  const dataSizes = [];
  const names = new Map();
  const dataNames = new Map();
  let imported = 0;
  let at = 8;
  while (at < bytes.length) {
    const id = bytes[at];
    const [size, start] = leb(bytes, at + 1);
    const end = start + size;
    if (id === 2) {
      let [count, p] = leb(bytes, start);
      for (; count > 0; count--) {
        [, p] = text(bytes, p);
        [, p] = text(bytes, p);
        const kind = bytes[p++];
        if (kind === 0) {
          imported++;
          [, p] = leb(bytes, p);
        } else if (kind === 1) {
          p += 1;
          const flags = bytes[p++];
          [, p] = leb(bytes, p);
          if (flags & 1) [, p] = leb(bytes, p);
        } else if (kind === 2) {
          const flags = bytes[p++];
          [, p] = leb(bytes, p);
          if (flags & 1) [, p] = leb(bytes, p);
        } else if (kind === 3) {
          p += 2;
        } else {
          throw new Error(`import kind ${kind} is not read here`);
        }
      }
    } else if (id === 10) {
      const [count, first] = leb(bytes, start);
      let p = first;
      for (let i = 0; i < count; i++) {
        const [bodySize, body] = leb(bytes, p);
        sizes.set(imported + i, bodySize + (body - p));
        p = body + bodySize;
      }
    } else if (id === 11) {
      const [count, first] = leb(bytes, start);
      let p = first;
      for (let i = 0; i < count; i++) {
        const segmentStart = p;
        const [flags, q] = leb(bytes, p);
        p = q;
        if (flags === 2) [, p] = leb(bytes, p);
        if (flags !== 1) while (bytes[p++] !== 0x0b); // the offset expression
        const [length, data] = leb(bytes, p);
        p = data + length;
        dataSizes.push(p - segmentStart);
      }
    } else if (id === 0) {
      const [name, p] = text(bytes, start);
      if (name === 'name') {
        let q = p;
        while (q < end) {
          const sub = bytes[q];
          const [subSize, subStart] = leb(bytes, q + 1);
          if (sub === 1 || sub === 9) {
            let [count, r] = leb(bytes, subStart);
            for (; count > 0; count--) {
              let index;
              let label;
              [index, r] = leb(bytes, r);
              [label, r] = text(bytes, r);
              (sub === 1 ? names : dataNames).set(index, label);
            }
          }
          q = subStart + subSize;
        }
      }
    }
    at = end;
  }
  if (names.size === 0) throw new Error('the module has no function names: give one built with its name section');
  const list = [];
  for (const [index, size] of sizes)
    list.push({ name: names.get(index) ?? `function ${index}`, bytes: size, kind: 'code' });
  dataSizes.forEach((size, index) =>
    list.push({ name: dataNames.get(index) ?? `data ${index}`, bytes: size, kind: 'data' }),
  );
  return { list, total: bytes.length };
}

/** The crate a function's code belongs to, from its demangled name. */
export function crateOf(name) {
  let rest = name.replace(/\[[0-9a-f]{16}\]/g, '').replace(/::h[0-9a-f]{16}$/, '');
  for (;;) {
    const inner = rest.match(/^(?:core|alloc)::ptr::drop_in_place<(.*)>$/);
    if (inner) rest = inner[1];
    else if (rest.startsWith('<')) rest = rest.slice(1);
    else if (/^(&|\*const |\*mut |mut |dyn |\[|\()/.test(rest))
      rest = rest.replace(/^(&|\*const |\*mut |mut |dyn |\[|\()/, '');
    else break;
  }
  const crate = rest.match(/^[A-Za-z_][A-Za-z0-9_]*/)?.[0] ?? '?';
  // A primitive type's method (`<f64 as Display>::fmt`) is the standard library's.
  if (/^(u8|u16|u32|u64|u128|usize|i8|i16|i32|i64|i128|isize|f32|f64|str|bool|char)$/.test(crate)) return 'core';
  // A blanket impl on a type parameter (`<T as Abstract<O>>::dial`) is the trait's crate's.
  if (/^[A-Z]$/.test(crate)) return rest.match(/ as ([A-Za-z_][A-Za-z0-9_]*)/)?.[1] ?? '?';
  // Functions without a path: wasm-bindgen's exports and shims, and unnamed ones (wasm-opt's).
  if (!name.includes('::')) return /^(__multi3|__[a-z]+ti3|mem[a-z]+)$/.test(name) ? 'core' : '(exports and shims)';
  return crate;
}

/** The group a crate is counted in: its own name, or its family's. */
export function groupOf(crate) {
  if (/^(core|alloc|std|__rustc|dlmalloc|compiler_builtins|hashbrown)$/.test(crate))
    return 'Rust std (core, alloc, hashbrown, dlmalloc)';
  if (/^(wasm_bindgen|wasm_bindgen_futures|js_sys|web_sys)/.test(crate)) return 'wasm-bindgen, js-sys, web-sys';
  if (
    crate.startsWith('libp2p') ||
    /^(multistream_select|quick_protobuf|quick_protobuf_codec|asynchronous_codec|yamux|snow|rw_stream_sink)$/.test(
      crate,
    )
  ) {
    return `libp2p: ${crate}`;
  }
  if (/^(futures|futures_util|futures_channel|futures_core|futures_task|futures_timer|send_wrapper)/.test(crate))
    return 'futures';
  if (/^(serde|serde_core|serde_json|serde_derive)$/.test(crate)) return 'serde, serde_json';
  return crate;
}

/** Groups smaller than this are summed on one line. */
const SMALL = 4096;

function table(rows, total) {
  for (const [name, bytes] of rows) {
    console.log(`${String(bytes).padStart(9)} ${((100 * bytes) / total).toFixed(1).padStart(5)}%  ${name}`);
  }
}

function summary(file, top) {
  const { list, total } = items(readFileSync(file));
  const byGroup = new Map();
  for (const item of list) {
    const group = item.kind === 'data' ? 'data (constants, strings, tables)' : groupOf(crateOf(item.name));
    byGroup.set(group, (byGroup.get(group) ?? 0) + item.bytes);
  }
  const counted = list.reduce((sum, item) => sum + item.bytes, 0);
  console.log(`${file}: ${total} bytes with names; ${counted} bytes of code and data:`);
  const sorted = [...byGroup].sort((a, b) => b[1] - a[1]);
  const small = sorted.filter(([, bytes]) => bytes < SMALL);
  table(
    sorted.filter(([, bytes]) => bytes >= SMALL),
    counted,
  );
  table(
    [[`${small.length} more crates, each under ${SMALL} bytes`, small.reduce((sum, [, b]) => sum + b, 0)]],
    counted,
  );
  const family = (prefix) => sorted.filter(([name]) => name.startsWith(prefix)).reduce((sum, [, b]) => sum + b, 0);
  console.log('Of which:');
  table(
    [
      ['libp2p, all its crates', family('libp2p: ')],
      ['pinfold_core and pinfold_wasm', family('pinfold_')],
    ],
    counted,
  );
  if (top > 0) console.log(`\nThe ${top} largest functions:`);
  table(
    list
      .filter((item) => item.kind === 'code')
      .sort((a, b) => b.bytes - a.bytes)
      .slice(0, top)
      .map((item) => [item.name.slice(0, 140), item.bytes]),
    counted,
  );
  return byGroup;
}

const args = process.argv.slice(2);
let top = 20;
if (args[0] === '--top') {
  top = Number(args[1]);
  args.splice(0, 2);
}
if (args.length < 1 || args.length > 2) {
  console.error('usage: node scripts/lib/wasm-audit.mjs [--top N] FILE.wasm [OTHER.wasm]');
  process.exit(2);
}
const groups = args.map((file, i) => {
  if (i > 0) console.log();
  return summary(file, top);
});
if (groups.length === 2) {
  console.log(`\n${args[0]} minus ${args[1]}, per group, 1 KB or more (what the second leaves out):`);
  const names = new Set([...groups[0].keys(), ...groups[1].keys()]);
  const rows = [...names]
    .map((name) => [name, (groups[0].get(name) ?? 0) - (groups[1].get(name) ?? 0)])
    .filter(([, bytes]) => Math.abs(bytes) >= 1024)
    .sort((a, b) => b[1] - a[1]);
  for (const [name, bytes] of rows) console.log(`${String(bytes).padStart(9)}  ${name}`);
}
