//! How the pinset's costs grow with its size: ingest, sync through the DAG and from a
//! snapshot, in memory (also as a light follower, which keeps no delta blocks) and into the
//! durable redb store, at each size in
//! `PINFOLD_BENCH_SIZES` (default `100000,1000000`), printed as one table of time, pins/s,
//! live heap, peak heap, resident growth and file size per pin. Each size runs in a child process of
//! its own, so that its memory figures start from nothing, bounded by
//! `PINFOLD_BENCH_SCALE_MINUTES` (default 30) per size. Pins are [`support::pin_entry`]'s,
//! written 1000 to a delta (as a batching peer or `pinfold service state import` writes
//! them).
//!
//! `scripts/bench-scale` (set `PINFOLD_BENCH_SCALE_10M=1` to add 10,000,000 pins), or
//! `cargo bench -p pinfold --bench pinset_scale`.

// The counting allocator below is the one place `unsafe` is allowed: GlobalAlloc is unsafe.
#![allow(unsafe_code)]

#[path = "../../core/tests/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use pinfold_core::codec::delta::encode_broadcast;
use pinfold_core::crdt::{BatchConfig, Config, MemoryStore, Replica};
use pinfold_native::store::RedbStore;
use support::{cold_sync, peer, pin_entry, ready, serve_fetches, snapshot_sync, writer_with_pins};

/// Pins per delta, as batched writes and imports make them.
const PINS_PER_DELTA: usize = 1000;
/// Set in a child process: the one size it measures.
const CHILD_ENV: &str = "PINFOLD_BENCH_SCALE_CHILD";

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The most `LIVE` reached since [`measure`] last reset it.
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grow(bytes: isize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size() as isize);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grow(new_size as isize - layout.size() as isize);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Hands the allocator's free pages back to the system, so that resident memory shows what
/// is held rather than what was left free (glibc only).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only returns unused heap pages to the kernel.
        unsafe { malloc_trim(0) };
    }
}

fn resident_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<i64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// One measured step, printed by the child as a tab-separated line and read by the parent.
struct Row {
    pins: u64,
    step: String,
    took: Duration,
    heap: Option<i64>,
    peak: Option<i64>,
    resident: Option<i64>,
    disk: Option<u64>,
}

impl Row {
    fn encode(&self) -> String {
        let opt = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
        format!(
            "row\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.pins,
            self.step,
            self.took.as_nanos(),
            opt(self.heap),
            opt(self.peak),
            opt(self.resident),
            opt(self.disk.map(|d| d as i64)),
        )
    }

    fn decode(line: &str) -> Option<Row> {
        let mut fields = line.strip_prefix("row\t")?.split('\t');
        let opt = |v: Option<&str>| v.and_then(|v| v.parse::<i64>().ok());
        Some(Row {
            pins: fields.next()?.parse().ok()?,
            step: fields.next()?.to_owned(),
            took: Duration::from_nanos(fields.next()?.parse().ok()?),
            heap: opt(fields.next()),
            peak: opt(fields.next()),
            resident: opt(fields.next()),
            disk: opt(fields.next()).map(|d| d as u64),
        })
    }
}

/// Memory taken by what `f` builds and returns, kept alive until the row is printed.
struct Measured<T> {
    value: T,
    took: Duration,
    memory: Memory,
}

/// Bytes a step left allocated (`heap`), the most it had allocated at once (`peak`: what a
/// WebAssembly follower's memory grows to, as it never shrinks), and resident growth.
#[derive(Clone, Copy)]
struct Memory {
    heap: i64,
    peak: i64,
    resident: i64,
}

fn measure<T>(f: impl FnOnce() -> T) -> Measured<T> {
    release_free_memory();
    let (heap_before, resident_before) = (LIVE.load(Ordering::Relaxed), resident_bytes());
    PEAK.store(heap_before, Ordering::Relaxed);
    let started = Instant::now();
    let value = f();
    let took = started.elapsed();
    release_free_memory();
    Measured {
        value,
        took,
        memory: Memory {
            heap: (LIVE.load(Ordering::Relaxed) - heap_before) as i64,
            peak: (PEAK.load(Ordering::Relaxed) - heap_before) as i64,
            resident: resident_bytes() - resident_before,
        },
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (such as `cargo test`'s listing) only
    // checks that this builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    match std::env::var(CHILD_ENV) {
        Ok(pins) => measure_size(pins.parse().expect("a pin count")),
        Err(_) => run_sizes(),
    }
}

/// Runs each size in a child process and prints the table.
fn run_sizes() {
    let mut sizes: Vec<u64> = std::env::var("PINFOLD_BENCH_SIZES")
        .unwrap_or_else(|_| "100000,1000000".to_owned())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("PINFOLD_BENCH_SIZES: pin counts, comma-separated")
        })
        .collect();
    if std::env::var_os("PINFOLD_BENCH_SCALE_10M").is_some() && !sizes.contains(&10_000_000) {
        sizes.push(10_000_000);
    }
    let limit = Duration::from_secs(
        60 * std::env::var("PINFOLD_BENCH_SCALE_MINUTES")
            .ok()
            .and_then(|m| m.parse().ok())
            .unwrap_or(30),
    );
    let mut rows = Vec::new();
    for pins in sizes {
        eprintln!(
            "measuring {pins} pins (at most {} min)",
            limit.as_secs() / 60
        );
        rows.extend(run_child(pins, limit));
    }
    print_table(&rows);
}

fn run_child(pins: u64, limit: Duration) -> Vec<Row> {
    let mut child = Command::new(std::env::current_exe().expect("the bench's own path"))
        .arg("--bench")
        .env(CHILD_ENV, pins.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("could not start a child bench process");
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| {
                let row = Row::decode(&line);
                if let Some(row) = &row {
                    eprintln!("  {} pins: {} in {:.2?}", row.pins, row.step, row.took);
                }
                row
            })
            .collect::<Vec<_>>()
    });
    let started = Instant::now();
    loop {
        match child.try_wait().expect("waiting for the child bench") {
            Some(status) if status.success() => break,
            Some(status) => panic!("the {pins}-pin run failed: {status}"),
            None if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("the {pins}-pin run passed its {limit:?} limit and was stopped");
                break;
            }
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    reader.join().expect("the child's output")
}

fn print_table(rows: &[Row]) {
    let per_pin = |bytes: Option<i64>, pins: u64| {
        bytes.map_or("-".to_owned(), |b| format!("{:.0}", b as f64 / pins as f64))
    };
    println!(
        "| {:<41} | {:>10} | {:>9} | {:>10} | {:>10} | {:>10} | {:>14} | {:>10} |",
        "step",
        "pins",
        "time (s)",
        "pins/s",
        "heap B/pin",
        "peak B/pin",
        "resident B/pin",
        "disk B/pin"
    );
    println!(
        "|{:-<43}|{:->12}|{:->11}|{:->12}|{:->12}|{:->12}|{:->16}|{:->12}|",
        "", "", "", "", "", "", "", ""
    );
    for row in rows {
        println!(
            "| {:<41} | {:>10} | {:>9.2} | {:>10.0} | {:>10} | {:>10} | {:>14} | {:>10} |",
            row.step,
            row.pins,
            row.took.as_secs_f64(),
            row.pins as f64 / row.took.as_secs_f64(),
            per_pin(row.heap, row.pins),
            per_pin(row.peak, row.pins),
            per_pin(row.resident, row.pins),
            per_pin(row.disk.map(|d| d as i64), row.pins),
        );
    }
}

/// Measures one size, printing each step's row as soon as it is done.
fn measure_size(pins: u64) {
    let emit = |step: &str, took: Duration, memory: Option<Memory>, disk: Option<u64>| {
        let row = Row {
            pins,
            step: step.to_owned(),
            took,
            heap: memory.map(|m| m.heap),
            peak: memory.map(|m| m.peak),
            resident: memory.map(|m| m.resident),
            disk,
        };
        println!("{}", row.encode());
    };
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("PINFOLD_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_owned());

    let writer = measure(|| writer_with_pins(pins, PINS_PER_DELTA));
    emit("ingest, in memory", writer.took, Some(writer.memory), None);
    let mut writer = writer.value;

    let follower = measure(|| cold_sync(&writer, Config::default()));
    emit(
        "sync through the DAG, in memory",
        follower.took,
        Some(follower.memory),
        None,
    );
    drop(follower);

    let started = Instant::now();
    let root = ready(writer.create_snapshot()).unwrap().unwrap();
    emit("make a snapshot", started.elapsed(), None, None);

    let follower = measure(|| snapshot_sync(&writer, &root, Config::default()));
    emit(
        "sync from a snapshot, in memory",
        follower.took,
        Some(follower.memory),
        None,
    );
    drop(follower);

    // A light follower keeps no delta blocks: only its keys, the merged block ids and
    // heads. (No replica keeps a snapshot it loaded, so from a snapshot it is as above.)
    let light = Config {
        keep_blocks: false,
        ..Config::default()
    };
    let follower = measure(|| cold_sync(&writer, light));
    emit(
        "light follower through the DAG, in memory",
        follower.took,
        Some(follower.memory),
        None,
    );
    drop(follower);

    let path = dir.join("ingest.redb");
    let ingested = measure(|| ingest_into(&path, pins));
    emit("ingest, redb", ingested.took, None, Some(file_size(&path)));
    drop(ingested);

    let path = dir.join("dag.redb");
    let synced = measure(|| sync_into(&path, &writer, None));
    emit(
        "sync through the DAG, redb",
        synced.took,
        Some(synced.memory),
        Some(file_size(&path)),
    );
    drop(synced);

    let snapshot_path = dir.join("snapshot.redb");
    let synced = measure(|| sync_into(&snapshot_path, &writer, Some(root)));
    emit(
        "sync from a snapshot, redb",
        synced.took,
        Some(synced.memory),
        Some(file_size(&snapshot_path)),
    );
    drop(synced);

    let reopened = measure(|| {
        let replica = ready(Replica::open(
            RedbStore::open(&path).unwrap(),
            Config::default(),
        ))
        .unwrap();
        assert!(replica.is_synced());
        replica
    });
    emit(
        "reopen the DAG-synced redb store",
        reopened.took,
        Some(reopened.memory),
        None,
    );
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn ingest_into(path: &Path, pins: u64) -> Replica<RedbStore> {
    let config = Config {
        batch: BatchConfig::new(PINS_PER_DELTA, u64::MAX),
        ..Config::default()
    };
    let mut replica = ready(Replica::open(RedbStore::open(path).unwrap(), config)).unwrap();
    for i in 0..pins {
        let (key, value) = pin_entry(i);
        ready(replica.put(&key, value, 0)).unwrap();
        while replica.poll_output().is_some() {}
    }
    ready(replica.commit(0)).unwrap();
    replica
}

fn sync_into(
    path: &Path,
    source: &Replica<MemoryStore>,
    snapshot: Option<cid::Cid>,
) -> Replica<RedbStore> {
    let mut replica = ready(Replica::open(
        RedbStore::open(path).unwrap(),
        Config::default(),
    ))
    .unwrap();
    if let Some(root) = snapshot {
        ready(replica.load_snapshot(&peer(0), &root, 0)).unwrap();
    }
    let heads: Vec<_> = source.heads().into_iter().map(|(c, _)| c).collect();
    ready(replica.receive_broadcast(&peer(0), &encode_broadcast(&heads), 0)).unwrap();
    serve_fetches(&mut replica, source.store(), drop);
    assert!(replica.is_synced());
    replica
}
