//! The connector reading a real Kubo's whole pin list (`pin/ls?stream=true&type=recursive`,
//! as the recover sweep and status listings do): time, and this process's memory at its peak
//! while the list streams in, against before.
//!
//! `cargo bench -p pinfold --bench kubo_pin_list` (after scripts/setup: Kubo on PATH).
//! `PINFOLD_BENCH_PINS` (default 1,000,000) raw blocks are imported into a Kubo repo kept in
//! `$PINFOLD_CACHE/bench/ipfs/pin-list` and pinned as CAR roots, once: later runs with as
//! many pins reuse it.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cid::Cid;
use multihash::Multihash;
use pinfold_native::ipfs::{IpfsClient, IpfsConfig};
use sha2::{Digest, Sha256};

/// Blocks per imported CAR file: its header names every one as a root to pin.
const PER_CAR: usize = 100_000;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let pins: usize = std::env::var("PINFOLD_BENCH_PINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cache = std::env::var_os("PINFOLD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/pinfold"));
    let run_dir = cache.join("bench");
    let (api_port, swarm_port) = (free_port(), free_port());
    let script = |name: &str, args: &[String]| {
        let status = Command::new(root.join("scripts").join(name))
            .args(args)
            .env("PINFOLD_RUN_DIR", &run_dir)
            .status()
            .expect("scripts/ runs");
        assert!(status.success(), "scripts/{name} failed");
    };
    script(
        "start-ipfs",
        &[
            "pin-list".into(),
            api_port.to_string(),
            swarm_port.to_string(),
        ],
    );
    let result = std::panic::catch_unwind(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(measure(pins, api_port, &run_dir))
    });
    script("stop-ipfs", &["pin-list".into()]);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

async fn measure(pins: usize, api_port: u16, run_dir: &std::path::Path) {
    let api = format!("http://127.0.0.1:{api_port}/api/v0");
    let filled = run_dir.join("ipfs/pin-list/filled");
    let have: usize = std::fs::read_to_string(&filled)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    if have < pins {
        let started = Instant::now();
        let http = reqwest::Client::new();
        for first in (have..pins).step_by(PER_CAR) {
            let last = (first + PER_CAR).min(pins);
            let car = car_of(first..last);
            let form = reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(car).file_name("pins.car"),
            );
            let response = http
                .post(format!("{api}/dag/import?pin-roots=true"))
                .multipart(form)
                .timeout(Duration::from_secs(3600))
                .send()
                .await
                .expect("dag/import answers");
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            assert!(status.is_success(), "dag/import: {status} {body}");
            std::fs::write(&filled, last.to_string()).unwrap();
            eprintln!(
                "imported and pinned {last} of {pins} blocks ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let client = IpfsClient::new(
        &format!("/ip4/127.0.0.1/tcp/{api_port}").parse().unwrap(),
        IpfsConfig {
            request_timeout: Duration::from_secs(3600),
            pin_stall_timeout: Duration::from_secs(120),
            unpin_timeout: Duration::from_secs(120),
        },
    )
    .unwrap();
    // Twice: the first read starts from this process's memory before any list (its peak is
    // the list's cost); the second from Kubo's warm caches (its time is the steady one, its
    // memory partly reuses what the first freed).
    for run in ["first", "second"] {
        reset_peak();
        let before = status_kib("VmRSS");
        let started = Instant::now();
        let listed = client.pin_ls_all("recursive").await.expect("pin/ls");
        let elapsed = started.elapsed();
        let peak = status_kib("VmHWM");
        let kept = status_kib("VmRSS");
        assert!(listed.len() >= pins, "Kubo listed {} pins", listed.len());
        {
            println!(
                "{run} pin/ls of {} recursive pins: {:.2} s ({:.0} pins/s); resident before {:.1} MiB, peak {:.1} MiB (+{:.0} B/pin), holding the list {:.1} MiB",
                listed.len(),
                elapsed.as_secs_f64(),
                listed.len() as f64 / elapsed.as_secs_f64(),
                before as f64 / 1024.0,
                peak as f64 / 1024.0,
                (peak - before) as f64 * 1024.0 / listed.len() as f64,
                kept as f64 / 1024.0,
            );
        }
    }
}

/// A CARv1 of the raw blocks `pinfold bench pin {n}` for `range`, each named a root.
fn car_of(range: std::ops::Range<usize>) -> Vec<u8> {
    let blocks: Vec<(Cid, Vec<u8>)> = range
        .map(|n| {
            let data = format!("pinfold bench pin {n}").into_bytes();
            let digest = Sha256::digest(&data);
            let hash = Multihash::<64>::wrap(0x12, &digest).unwrap();
            (Cid::new_v1(0x55, hash), data)
        })
        .collect();
    let mut header = vec![0xa2, 0x65];
    header.extend_from_slice(b"roots");
    cbor_head(&mut header, 4, blocks.len() as u64);
    for (cid, _) in &blocks {
        let bytes = cid.to_bytes();
        header.extend_from_slice(&[0xd8, 0x2a]);
        cbor_head(&mut header, 2, bytes.len() as u64 + 1);
        header.push(0);
        header.extend_from_slice(&bytes);
    }
    header.push(0x67);
    header.extend_from_slice(b"version");
    header.push(0x01);
    let mut car = Vec::new();
    varint(&mut car, header.len() as u64);
    car.extend_from_slice(&header);
    for (cid, data) in &blocks {
        let bytes = cid.to_bytes();
        varint(&mut car, (bytes.len() + data.len()) as u64);
        car.extend_from_slice(&bytes);
        car.extend_from_slice(data);
    }
    car
}

fn cbor_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let major = major << 5;
    match n {
        0..=23 => out.push(major | n as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, n as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

/// Resets the peak resident size (VmHWM) to the current one.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
