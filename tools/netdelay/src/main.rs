//! Holds every packet of an NFQUEUE queue for a fixed time, then lets it go: the one-way
//! delay `tc qdisc ... netem delay` adds, for kernels built without netem. The fault tests
//! run one in each host's network namespace behind a rule such as
//! `iptables -A OUTPUT -o c0 -j NFQUEUE --queue-num 0`.
//!
//! `pinfold-netdelay --queue N --delay-ms MS` prints `ready` once bound, then runs until
//! killed. Packets keep their order; those past the kernel queue's 65,536 are dropped.

use std::collections::VecDeque;
use std::io::{ErrorKind, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nfq::{Message, Queue, Verdict};

/// Packets the kernel holds for the queue before it drops new ones.
const MAX_QUEUED: u32 = 65_536;
/// How long the loop sleeps when nothing is due: the delay's granularity.
const GRANULARITY: Duration = Duration::from_micros(500);

fn main() -> ExitCode {
    let (queue, delay) = match parse(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!("pinfold-netdelay: {error}\nusage: pinfold-netdelay --queue N --delay-ms MS");
            return ExitCode::from(2);
        }
    };
    match run(queue, delay) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pinfold-netdelay: queue {queue}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The queue number and the delay from `--queue N --delay-ms MS`.
fn parse(mut args: impl Iterator<Item = String>) -> Result<(u16, Duration), String> {
    let (mut queue, mut delay) = (None, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--queue" => {
                queue = Some(
                    value
                        .parse()
                        .map_err(|_| format!("--queue {value:?}: not a queue number (0-65535)"))?,
                )
            }
            "--delay-ms" => {
                delay = Some(Duration::from_millis(value.parse().map_err(|_| {
                    format!("--delay-ms {value:?}: not a number of milliseconds")
                })?))
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok((
        queue.ok_or("--queue is required")?,
        delay.ok_or("--delay-ms is required")?,
    ))
}

fn run(queue_num: u16, delay: Duration) -> std::io::Result<()> {
    let mut queue = Queue::open()?;
    queue.bind(queue_num)?;
    // Only the packets' metadata comes up: the verdict needs nothing else.
    queue.set_copy_range(queue_num, 0)?;
    queue.set_queue_max_len(queue_num, MAX_QUEUED)?;
    queue.set_nonblocking(true);
    println!("ready");
    std::io::stdout().flush()?;
    let mut held: VecDeque<(Instant, Message)> = VecDeque::new();
    loop {
        loop {
            match queue.recv() {
                Ok(mut packet) => {
                    packet.set_verdict(Verdict::Accept);
                    held.push_back((Instant::now() + delay, packet));
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) => return Err(error),
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, packet)) = held.pop_front() {
                queue.verdict(packet)?;
            }
        }
        std::thread::sleep(GRANULARITY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> impl Iterator<Item = String> + '_ {
        line.split_whitespace().map(String::from)
    }

    #[test]
    fn parses_the_queue_and_the_delay() {
        assert_eq!(
            parse(args("--queue 3 --delay-ms 200")),
            Ok((3, Duration::from_millis(200)))
        );
        assert_eq!(
            parse(args("--delay-ms 5 --queue 0")),
            Ok((0, Duration::from_millis(5)))
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(parse(args("--queue 70000 --delay-ms 1"))
            .unwrap_err()
            .contains("queue number"));
        assert!(parse(args("--queue 1 --delay-ms soon"))
            .unwrap_err()
            .contains("milliseconds"));
        assert!(parse(args("--queue 1"))
            .unwrap_err()
            .contains("--delay-ms is required"));
        assert!(parse(args("--queue"))
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse(args("--rate 1 --queue 1"))
            .unwrap_err()
            .contains("unknown option"));
    }
}
