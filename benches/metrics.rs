//! Cost of `Metrics::record_request` on the hot path (one call per proxied
//! request; goal: well under a microsecond). Not a test: prints ns/call.
//! Run: `cargo bench --bench metrics`.

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use promptgate::proxy::{Metrics, RequestSample};

fn sample(i: u64) -> RequestSample<'static> {
    const PROMPTS: [&str; 8] = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"];
    RequestSample {
        prompt: PROMPTS[(i % 8) as usize],
        variant: if i.is_multiple_of(10) {
            "canary"
        } else {
            "stable"
        },
        status: if i.is_multiple_of(50) { "error" } else { "ok" },
        latency_ms: (i % 3000) as f64 * 0.7,
        ttft_ms: Some((i % 500) as f64),
        input_tokens: 40,
        output_tokens: 12,
        cost: 1e-6,
    }
}

/// CPU time (user + system) of this process so far, in nanoseconds, from
/// /proc/self/stat (clock ticks, assumed 100 Hz as on every Linux default).
/// On a shared machine wall time mostly measures the neighbours.
fn cpu_ns() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime, stime are 14, 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) * 1e7
}

/// (wall ns per call per thread, CPU ns per call over all threads)
fn run(threads: u64, per_thread: u64) -> (f64, f64) {
    let m = Arc::new(Metrics::new());
    for i in 0..1000 {
        m.record_request(&sample(i));
    }
    let c0 = cpu_ns();
    let t0 = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    m.record_request(black_box(&sample(i + t)));
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let wall = t0.elapsed().as_nanos() as f64 / per_thread as f64;
    (wall, (cpu_ns() - c0) / (threads * per_thread) as f64)
}

fn main() {
    let n = 5_000_000;
    for threads in [1, 2, 4] {
        let (wall, cpu) = run(threads, n);
        println!(
            "record_request, {threads} thread(s): {cpu:.0} ns CPU per call; {wall:.0} ns wall per call per thread"
        );
    }
    let m = Metrics::new();
    for i in 0..100_000 {
        m.record_request(&sample(i));
    }
    let c0 = cpu_ns();
    let mut bytes = 0;
    for _ in 0..200 {
        bytes = m.render(&[]).len();
    }
    println!(
        "render, 16 series: {:.0} us CPU per call, {bytes} bytes",
        (cpu_ns() - c0) / 200.0 / 1e3
    );
}
