//! Cost of `Metrics::record_request` on the hot path (one call per proxied
//! request; goal: well under a microsecond). Not a test: prints ns/call.
//! Run: `cargo bench --bench metrics`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use promptgate::proxy::metrics::{Metrics, RequestSample};

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

fn run(threads: u64, per_thread: u64) -> f64 {
    let m = Arc::new(Metrics::new());
    for i in 0..1000 {
        m.record_request(&sample(i));
    }
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
    t0.elapsed().as_nanos() as f64 / per_thread as f64
}

fn main() {
    let n = 2_000_000;
    for threads in [1, 2, 4] {
        println!(
            "record_request, {threads} thread(s): {:.0} ns per call (wall time / calls per thread)",
            run(threads, n)
        );
    }
    let m = Metrics::new();
    for i in 0..100_000 {
        m.record_request(&sample(i));
    }
    let t0 = Instant::now();
    let text = m.render(&[]);
    println!(
        "render, 16 series: {:.0} us, {} bytes",
        t0.elapsed().as_secs_f64() * 1e6,
        text.len()
    );
}
