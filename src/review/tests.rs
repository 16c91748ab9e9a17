use std::io::Write;

use chrono::{Duration, Utc};
use proptest::prelude::*;
use serde_json::json;

use super::queue::{Event, State, replay_file};
use super::{Decision, ItemStatus, Lease, ReviewError, ReviewItem, ReviewQueue, Verdict};

fn item(id: &str) -> ReviewItem {
    let row = crate::logstore::RequestLogRow::new(id, Utc::now());
    ReviewItem::from_row(&row, &[], Some("capitals"), "random".into())
}

#[test]
fn a_decided_item_refuses_a_second_decision_and_keeps_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let q = ReviewQueue::open(dir.path()).unwrap();
    assert_eq!(q.enqueue(vec![item("a"), item("b"), item("a")]).unwrap(), 2);
    assert_eq!(
        q.enqueue(vec![item("a")]).unwrap(),
        0,
        "a call is never queued twice"
    );
    q.decide("a", "ann", Verdict::Accept).unwrap();
    let err = q.decide("a", "bob", Verdict::Discard).unwrap_err();
    assert!(matches!(err, ReviewError::AlreadyDecided { .. }), "{err}");
    assert!(matches!(
        q.decide("zzz", "bob", Verdict::Accept).unwrap_err(),
        ReviewError::UnknownItem(_)
    ));
    let v = q.get("a").unwrap();
    assert_eq!(v.decision.unwrap().reviewer, "ann");
}

#[test]
fn two_reviewers_never_hold_the_same_item_until_the_lease_expires() {
    let dir = tempfile::tempdir().unwrap();
    let q = ReviewQueue::open(dir.path()).unwrap();
    q.enqueue(vec![item("a"), item("b")]).unwrap();
    let ann = q
        .lease_next("ann", Duration::minutes(5), None)
        .unwrap()
        .unwrap();
    let bob = q
        .lease_next("bob", Duration::minutes(5), None)
        .unwrap()
        .unwrap();
    assert_ne!(ann.item.request_id, bob.item.request_id);
    assert!(
        q.lease_next("cy", Duration::minutes(5), None)
            .unwrap()
            .is_none()
    );
    // Ann asks again: she gets the item she holds.
    let again = q
        .lease_next("ann", Duration::minutes(5), None)
        .unwrap()
        .unwrap();
    assert_eq!(again.item.request_id, ann.item.request_id);
    assert!(matches!(
        q.decide(&ann.item.request_id, "bob", Verdict::Accept)
            .unwrap_err(),
        ReviewError::LeasedByOther { .. }
    ));
    // An expired lease frees the item.
    q.lease("a", "ann", Duration::milliseconds(-1)).ok();
    let other = ReviewQueue::open(dir.path()).unwrap();
    let cy = other
        .lease_next("cy", Duration::minutes(5), None)
        .unwrap()
        .unwrap();
    assert_eq!(cy.item.request_id, "a");
}

#[test]
fn compaction_keeps_the_state_and_other_handles_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let q = ReviewQueue::open(dir.path()).unwrap();
    let other = ReviewQueue::open(dir.path()).unwrap();
    q.enqueue((0..5).map(|i| item(&format!("r{i}"))).collect())
        .unwrap();
    q.lease("r1", "ann", Duration::minutes(5)).unwrap();
    q.release("r1", "ann").unwrap();
    q.decide(
        "r2",
        "ann",
        Verdict::Label {
            label: "rude".into(),
        },
    )
    .unwrap();
    q.lease("r3", "bob", Duration::minutes(5)).unwrap();
    let before = other.list().unwrap();
    let lines = q.compact().unwrap();
    assert_eq!(lines, 7, "5 items, 1 decision, 1 live lease");
    assert_eq!(other.list().unwrap(), before);
    other.decide("r4", "bob", Verdict::Discard).unwrap();
    assert_eq!(q.stats().unwrap().decided, 2);
}

#[test]
fn a_correction_needs_text_or_columns() {
    let dir = tempfile::tempdir().unwrap();
    let q = ReviewQueue::open(dir.path()).unwrap();
    q.enqueue(vec![item("a")]).unwrap();
    let err = q
        .decide(
            "a",
            "ann",
            Verdict::Correct {
                expected: None,
                columns: Default::default(),
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("expected"), "{err}");
    assert!(
        q.decide("a", "", Verdict::Accept)
            .unwrap_err()
            .to_string()
            .contains("reviewer")
    );
    assert_eq!(q.get("a").unwrap().status, ItemStatus::Pending);
}

fn arb_verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        Just(Verdict::Accept),
        Just(Verdict::Discard),
        "[a-z]{1,8}".prop_map(|label| Verdict::Label { label }),
        (
            proptest::option::of(".{0,20}"),
            proptest::collection::btree_map("[a-z]{1,5}", ".{0,8}", 0..3)
        )
            .prop_map(|(expected, cols)| Verdict::Correct {
                expected,
                columns: cols.into_iter().map(|(k, v)| (k, json!(v))).collect(),
            }),
    ]
}

fn arb_event() -> impl Strategy<Value = Event> {
    let id = "r[0-4]";
    prop_oneof![
        (id, ".{0,30}").prop_map(|(id, out)| {
            let mut i = item(&id);
            i.output = out;
            Event::Enqueue { item: Box::new(i) }
        }),
        (id, "[a-c]").prop_map(|(id, who)| Event::Lease(Lease {
            lease_id: format!("{id}-{who}"),
            request_id: id,
            reviewer: who,
            expires: Utc::now() + Duration::minutes(1),
        })),
        (id, "[a-c]").prop_map(|(id, who)| Event::Release {
            lease_id: format!("{id}-{who}"),
            request_id: id
        }),
        (id, "[a-c]", arb_verdict()).prop_map(|(id, who, verdict)| Event::Decide(Decision {
            request_id: id,
            verdict,
            reviewer: who,
            ts: crate::logstore::RequestLogRow::new("", Utc::now()).ts,
        })),
    ]
}

proptest! {
    #[test]
    fn every_event_reads_back_as_written(ev in arb_event()) {
        let line = serde_json::to_string(&ev).unwrap();
        prop_assert!(!line.contains('\n'));
        let back: Event = serde_json::from_str(&line).unwrap();
        prop_assert_eq!(back, ev);
    }

    /// A crash mid-append leaves a prefix of the last line: the state is
    /// the replay of the complete lines, and the next append is readable.
    #[test]
    fn a_torn_tail_loses_only_the_torn_line(events in proptest::collection::vec(arb_event(), 1..12), cut in 0.0f64..1.0) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let lines: Vec<String> = events.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
        let (last, complete) = lines.split_last().unwrap();
        let keep = ((last.len() as f64) * cut) as usize;
        let mut f = std::fs::File::create(&path).unwrap();
        for l in complete { writeln!(f, "{l}").unwrap(); }
        f.write_all(&last.as_bytes()[..keep]).unwrap();
        drop(f);
        let mut expected = State::default();
        for e in &events[..events.len() - 1] { expected.apply(e.clone()); }
        let q = ReviewQueue::open(dir.path()).unwrap();
        let got = replay_file(&path).unwrap();
        prop_assert_eq!(got.views(Utc::now()), expected.views(Utc::now()));
        // The queue appends on a fresh line after repairing the tail.
        q.enqueue(vec![item("fresh")]).unwrap();
        let after = replay_file(&path).unwrap();
        prop_assert!(after.contains("fresh"));
        prop_assert_eq!(after.views(Utc::now()).len(), expected.views(Utc::now()).len() + usize::from(!expected.contains("fresh")));
    }
}
