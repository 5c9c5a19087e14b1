//! TEMPORARY timing breakdown (delete).
use std::hint::black_box;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use serde_json::value::RawValue;

use super::{Limits, fast, parse_event_value};
use crate::model::Event;

const IN: &str = r#"{"id":"bench-1-2","bot":"helpdesk","type":"message","direction":"in","provider":"telegram","user":{"id":"123456","name":"Олена К."},"text":"Hello! Where is my order #12345? It was supposed to arrive yesterday, tracking says it is still in the warehouse.","ts":"2026-11-26T10:15:00.123Z"}"#;
const OUT: &str = r#"{"id":"bench-1-3","bot":"helpdesk","type":"message","direction":"out","provider":"telegram","user":{"id":"123456","name":"Олена К."},"text":"Your order #12345 left the warehouse this morning; here is the invoice.","attachments":[{"type":"file","url":"https://example.com/invoices/12345.pdf","name":"invoice-12345.pdf","mime":"application/pdf","size":48211}],"sender":{"kind":"operator","id":"op-7"},"ts":"2026-11-26T10:16:00.456Z"}"#;

fn time(name: &str, mut f: impl FnMut()) {
    let mut best = f64::MAX;
    for _ in 0..20 {
        let start = Instant::now();
        for _ in 0..20 {
            f();
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / (20.0 * 500.0));
    }
    println!("{name:40} {best:.3} µs/event");
}

#[test]
#[ignore]
fn tmp_breakdown() {
    let now = Utc
        .with_ymd_and_hms(2026, 11, 26, 10, 20, 0)
        .single()
        .expect("t");
    let limits = Limits::default();
    for (label, ev) in [("in", IN), ("out", OUT)] {
        println!("--- {label}");
        let body = format!("[{}]", vec![ev; 500].join(","));
        time("split into RawValue", || {
            let raws: Vec<&RawValue> = serde_json::from_str(black_box(&body)).expect("ok");
            black_box(raws);
        });
        let raws: Vec<&RawValue> = serde_json::from_str(&body).expect("ok");
        time("typed from_str::<Event>", || {
            for r in &raws {
                black_box(serde_json::from_str::<Event>(black_box(r.get())).expect("ok"));
            }
        });
        time("fast::parse", || {
            for r in &raws {
                black_box(fast::parse(black_box(r.get()), now, &limits).expect("ok"));
            }
        });
        time("slow (Value + checks)", || {
            for (i, r) in raws.iter().enumerate() {
                let v: serde_json::Value = serde_json::from_str(black_box(r.get())).expect("ok");
                black_box(parse_event_value(v, i, now, &limits).expect("ok"));
            }
        });
        time("IgnoredAny", || {
            for r in &raws {
                black_box(
                    serde_json::from_str::<serde::de::IgnoredAny>(black_box(r.get())).expect("ok"),
                );
            }
        });
        time("rfc3339 parse", || {
            for _ in &raws {
                black_box(
                    chrono::DateTime::parse_from_rfc3339(black_box("2026-11-26T10:16:00.456Z"))
                        .expect("ok"),
                );
            }
        });
        time("parse_batch", || {
            black_box(super::parse_batch(black_box(body.as_bytes()), now, &limits).expect("ok"));
        });
    }
}

#[test]
#[ignore]
fn tmp_fast_only() {
    let now = Utc
        .with_ymd_and_hms(2026, 11, 26, 10, 20, 0)
        .single()
        .expect("t");
    let limits = Limits::default();
    let body = format!("[{}]", vec![IN; 500].join(","));
    let raws: Vec<&RawValue> = serde_json::from_str(&body).expect("ok");
    for _ in 0..6000 {
        for r in &raws {
            black_box(fast::parse(black_box(r.get()), now, &limits).expect("ok"));
        }
    }
}
