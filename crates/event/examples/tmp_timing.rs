//! TEMPORARY: release-mode timing of parse_batch (delete after measuring).
use std::time::Instant;

use botwatch_event::{Limits, parse_batch};
use chrono::{TimeZone, Utc};

const IN: &str = r#"{"id":"bench-1-2","bot":"helpdesk","type":"message","direction":"in","provider":"telegram","user":{"id":"123456","name":"Олена К."},"text":"Hello! Where is my order #12345? It was supposed to arrive yesterday, tracking says it is still in the warehouse.","ts":"2026-11-26T10:15:00.123Z"}"#;
const OUT: &str = r#"{"id":"bench-1-3","bot":"helpdesk","type":"message","direction":"out","provider":"telegram","user":{"id":"123456","name":"Олена К."},"text":"Your order #12345 left the warehouse this morning; here is the invoice.","attachments":[{"type":"file","url":"https://example.com/invoices/12345.pdf","name":"invoice-12345.pdf","mime":"application/pdf","size":48211}],"sender":{"kind":"operator","id":"op-7"},"ts":"2026-11-26T10:16:00.456Z"}"#;

fn main() {
    let now = Utc
        .with_ymd_and_hms(2026, 11, 26, 10, 20, 0)
        .single()
        .expect("time");
    let limits = Limits::default();
    for (name, event) in [("inbound", IN), ("outbound", OUT)] {
        let body = format!("[{}]", vec![event; 500].join(","));
        assert_eq!(
            parse_batch(body.as_bytes(), now, &limits)
                .expect("valid")
                .len(),
            500
        );
        let mut best = f64::MAX;
        let mut samples = Vec::new();
        for _ in 0..30 {
            let rounds = 40;
            let start = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(
                    parse_batch(std::hint::black_box(body.as_bytes()), now, &limits)
                        .expect("valid"),
                );
            }
            let us = start.elapsed().as_secs_f64() * 1e6 / (rounds as f64 * 500.0);
            best = best.min(us);
            samples.push(us);
        }
        samples.sort_by(f64::total_cmp);
        println!(
            "{name:9} {} bytes/event: best {best:.3} µs/event, median {:.3} µs/event",
            event.len(),
            samples[samples.len() / 2]
        );
    }
}
