use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::fairness::Bucket;
use crate::tag::TagParts;

fn key() -> TagKey {
    TagKey::from_bytes(&[0x5a; 16])
}

fn client(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn req(a: u32) -> Request {
    Request {
        a,
        b: 2,
        op: Op::Mul,
    }
}

fn mac(last: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, last])
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn layout_packs_worker_in_low_byte_and_round_trips() {
    let layout = TagLayout::new(65_536, 3);
    assert_eq!(layout.slot_bits(), 16);
    assert_eq!(layout.generation_bits(), 8);
    let tag = layout.encode(0xabcd, 0x1ef, 0x1234_5678);
    // generation keeps its low 8 bits
    assert_eq!(tag, 0x1234_5678_efab_cd03);
    assert_eq!(
        tag & 0xff,
        3,
        "the last tag byte of the frame is the worker"
    );
    assert_eq!(
        layout.decode(tag),
        TagParts {
            worker: 3,
            slot: 0xabcd,
            generation: 0xef,
            check: 0x1234_5678,
        }
    );
}

#[test]
fn layout_slot_bits_follow_capacity() {
    for (capacity, bits) in [
        (1, 0),
        (2, 1),
        (3, 2),
        (4, 2),
        (5, 3),
        (1000, 10),
        (1024, 10),
        (65_536, 16),
        (65_537, 17),
        (MAX_CAPACITY, 20),
    ] {
        let layout = TagLayout::new(capacity, 0);
        assert_eq!(layout.slot_bits(), bits, "capacity {capacity}");
        let last = capacity as u32 - 1;
        let g = layout.generation_bits();
        let tag = layout.encode(last, (1 << g) - 1, u32::MAX);
        assert_eq!(layout.decode(tag).slot, last);
        assert_eq!(layout.decode(tag).generation, (1 << g) - 1);
    }
}

#[test]
#[should_panic(expected = "out of range")]
fn layout_rejects_oversized_capacity() {
    TagLayout::new(MAX_CAPACITY + 1, 0);
}

#[test]
fn insert_find_remove_and_stale_tag() {
    let t0 = Instant::now();
    let mut table = PendingTable::new(4, 1, key(), t0);
    let h = table
        .insert(client(1000), req(7), Bucket::NONE, t0)
        .unwrap();
    assert!(table.dispatch(h, mac(11), t0, t0 + 20 * MS, 0));
    let tag = table.tag(h);
    assert_eq!(table.find(tag), Ok(h));
    let entry = *table.get(h);
    assert_eq!(entry.client, client(1000));
    assert_eq!(entry.request, req(7));
    assert_eq!(entry.sent_to(), &[mac(11)]);
    assert_eq!(entry.current_server(), Some(mac(11)));
    assert_eq!(table.len(), 1);

    assert_eq!(table.remove(h), entry);
    assert!(table.is_empty());
    // The same tag again (a duplicated reply) is stale now.
    assert_eq!(table.find(tag), Err(TagMiss::Stale));
    assert_eq!(table.next_deadline(), None);
}

#[test]
fn reused_slot_gets_a_new_generation() {
    let t0 = Instant::now();
    // One slot: every request reuses it.
    let mut table = PendingTable::new(1, 0, key(), t0);
    let first = table.insert(client(1), req(1), Bucket::NONE, t0).unwrap();
    let old_tag = table.tag(first);
    table.remove(first);
    let second = table.insert(client(2), req(2), Bucket::NONE, t0).unwrap();
    assert_eq!(first, second, "same slot");
    let new_tag = table.tag(second);
    assert_ne!(old_tag, new_tag);
    assert_eq!(table.find(old_tag), Err(TagMiss::Stale));
    assert_eq!(table.find(new_tag), Ok(second));
}

#[test]
fn foreign_and_out_of_range_tags_are_told_apart() {
    let t0 = Instant::now();
    let table = PendingTable::new(3, 2, key(), t0);
    let other = TagLayout::new(3, 5);
    assert_eq!(
        table.find(other.encode(0, 0, 0)),
        Err(TagMiss::ForeignWorker)
    );
    // Capacity 3 uses 2 slot bits: slot 3 exists in the tag space only.
    assert_eq!(
        table.find(table.layout().encode(3, 0, 0)),
        Err(TagMiss::NoSuchSlot)
    );
    // A free slot at a generation never issued: made up, whatever the check.
    assert_eq!(
        table.find(table.layout().encode(1, 0, 0)),
        Err(TagMiss::Forged)
    );
}

#[test]
fn a_tag_with_any_other_check_is_forged_and_changes_nothing() {
    let t0 = Instant::now();
    let mut table = PendingTable::new(4, 1, key(), t0);
    let h = table
        .insert(client(1000), req(7), Bucket::NONE, t0)
        .unwrap();
    let tag = table.tag(h);
    // Every single-bit change of the check, and a few random checks.
    for bit in 32..64 {
        assert_eq!(
            table.find(tag ^ (1 << bit)),
            Err(TagMiss::Forged),
            "bit {bit}"
        );
    }
    let mut rng = fastrand::Rng::with_seed(1);
    for _ in 0..10_000 {
        let forged = (rng.u64(..) << 32) | (tag & 0xffff_ffff);
        if forged != tag {
            assert_eq!(table.find(forged), Err(TagMiss::Forged));
        }
    }
    assert_eq!(table.find(tag), Ok(h), "the real tag still works");
    // Another key issues other checks: a second load balancer's tags (or
    // an earlier run's) are not ours.
    let other = PendingTable::new(4, 1, TagKey::from_bytes(&[1; 16]), t0);
    assert_eq!(other.find(tag), Err(TagMiss::Forged));
}

#[test]
fn a_tag_replayed_after_its_generation_bits_wrap_is_forged() {
    let t0 = Instant::now();
    // One slot: 24 generation bits in the tag.
    let mut table = PendingTable::new(1, 0, key(), t0);
    let h = table.insert(client(1), req(1), Bucket::NONE, t0).unwrap();
    let first = table.tag(h);
    table.remove(h);
    // 2^24 uses later the tag's low 32 bits come round again.
    let wrapped = 1 << 24;
    table.set_generation(h, wrapped);
    let h = table.insert(client(1), req(1), Bucket::NONE, t0).unwrap();
    let current = table.tag(h);
    assert_eq!(current as u32, first as u32, "same low bits");
    assert_ne!(current, first, "another check");
    assert_eq!(table.find(current), Ok(h));
    // The check covers the whole generation: the old tag replayed now is
    // forged, not taken.
    assert_eq!(table.find(first), Err(TagMiss::Forged));
    // The generation just before is a genuine late reply.
    let previous = wrapped - 1;
    let late = table
        .layout()
        .encode(0, previous, key().check(0, 0, previous));
    assert_eq!(table.find(late), Err(TagMiss::Stale));
}

#[test]
fn free_list_is_fifo_so_a_freed_slot_waits_for_all_others() {
    let t0 = Instant::now();
    let mut table = PendingTable::new(3, 0, key(), t0);
    let a = table.insert(client(1), req(1), Bucket::NONE, t0).unwrap();
    table.remove(a);
    let b = table.insert(client(2), req(2), Bucket::NONE, t0).unwrap();
    let c = table.insert(client(3), req(3), Bucket::NONE, t0).unwrap();
    assert_ne!(a, b);
    assert_ne!(a, c);
    let d = table.insert(client(4), req(4), Bucket::NONE, t0).unwrap();
    assert_eq!(a, d, "a's slot comes last");
    assert!(table.is_full());
    assert_eq!(table.insert(client(5), req(5), Bucket::NONE, t0), None);
}

#[test]
fn deadlines_expire_in_order_and_redispatch_moves_to_the_back() {
    let t0 = Instant::now();
    let mut table = PendingTable::new(8, 0, key(), t0);
    let h1 = table.insert(client(1), req(1), Bucket::NONE, t0).unwrap();
    table.dispatch(h1, mac(1), t0, t0 + 20 * MS, 0);
    let h2 = table
        .insert(client(2), req(2), Bucket::NONE, t0 + MS)
        .unwrap();
    table.dispatch(h2, mac(2), t0 + MS, t0 + 21 * MS, 0);
    let h3 = table
        .insert(client(3), req(3), Bucket::NONE, t0 + 2 * MS)
        .unwrap();
    table.dispatch(h3, mac(3), t0 + 2 * MS, t0 + 22 * MS, 0);
    assert_eq!(table.next_deadline(), Some(t0 + 20 * MS));

    assert_eq!(table.pop_expired(t0 + 19 * MS), None);
    assert_eq!(table.pop_expired(t0 + 20 * MS), Some(h1));
    assert_eq!(table.pop_expired(t0 + 20 * MS), None);
    // h1 is retried: it goes behind h3.
    assert!(table.dispatch(h1, mac(2), t0 + 20 * MS, t0 + 40 * MS, 0));
    assert_eq!(table.get(h1).sent_at(1), t0 + 20 * MS);
    assert_eq!(table.get(h1).sent_to(), &[mac(1), mac(2)]);
    assert_eq!(table.get(h1).attempts(), 2);
    // h2 answered: leaves the deadline list from the middle.
    table.remove(h2);
    assert_eq!(table.pop_expired(t0 + 100 * MS), Some(h3));
    assert_eq!(table.pop_expired(t0 + 100 * MS), Some(h1));
    assert_eq!(table.pop_expired(t0 + 100 * MS), None);
    assert_eq!(table.next_deadline(), None);
    // Detached entries are still in flight and can be removed.
    assert_eq!(table.len(), 2);
    table.remove(h3);
    table.remove(h1);
    assert!(table.is_empty());
}

#[test]
fn lanes_expire_by_earliest_deadline_and_out_of_order_inserts_are_placed() {
    let t0 = Instant::now();
    let mut table = PendingTable::new(8, 0, key(), t0);
    let h1 = table.insert(client(1), req(1), Bucket::NONE, t0).unwrap();
    let h2 = table.insert(client(2), req(2), Bucket::NONE, t0).unwrap();
    let h3 = table.insert(client(3), req(3), Bucket::NONE, t0).unwrap();
    table.dispatch(h1, mac(1), t0, t0 + 50 * MS, 3);
    table.dispatch(h2, mac(2), t0, t0 + 10 * MS, 1);
    // Out of order in lane 3: placed before h1.
    table.dispatch(h3, mac(3), t0, t0 + 30 * MS, 3);
    assert_eq!(table.next_deadline(), Some(t0 + 10 * MS));
    assert_eq!(table.pop_expired(t0 + 100 * MS), Some(h2));
    assert_eq!(table.pop_expired(t0 + 100 * MS), Some(h3));
    // Rearming keeps the attempts and moves the deadline.
    table.rearm(h3, t0 + 200 * MS, LANES - 1);
    assert_eq!(table.get(h3).attempts(), 1);
    assert_eq!(table.pop_expired(t0 + 100 * MS), Some(h1));
    assert_eq!(table.pop_expired(t0 + 100 * MS), None);
    assert_eq!(table.next_deadline(), Some(t0 + 200 * MS));
}

#[test]
fn answers_are_recorded_per_attempt() {
    let t0 = Instant::now();
    let mut table = PendingTable::new(2, 0, key(), t0);
    let h = table.insert(client(1), req(1), Bucket::NONE, t0).unwrap();
    table.dispatch(h, mac(1), t0, t0 + 5 * MS, 0);
    table.dispatch(h, mac(2), t0 + 5 * MS, t0 + 10 * MS, 0);
    table.dispatch(h, mac(1), t0 + 10 * MS, t0 + 15 * MS, 0);
    let e = *table.get(h);
    assert_eq!(e.attempt_to(mac(1)), Some(2));
    assert_eq!(e.attempts_to(mac(1)), 2);
    assert_eq!(e.attempt_to(mac(3)), None);
    table.mark_answered(h, 1);
    let e = *table.get(h);
    assert!(e.is_answered(1) && !e.is_answered(0));
    assert_eq!(
        e.unanswered().collect::<Vec<_>>(),
        vec![(0, mac(1)), (2, mac(1))]
    );
    assert!(!e.client_answered);
    table.mark_client_answered(h);
    assert!(table.get(h).client_answered);
}

#[test]
fn dispatch_stops_at_max_attempts() {
    let t0 = Instant::now();
    let mut table = PendingTable::new(1, 0, key(), t0);
    let h = table.insert(client(1), req(1), Bucket::NONE, t0).unwrap();
    for i in 0..MAX_ATTEMPTS {
        assert!(table.dispatch(h, mac(i as u8), t0, t0 + MS * i as u32, 0));
    }
    assert!(!table.dispatch(h, mac(99), t0, t0 + 100 * MS, 0));
    assert_eq!(table.get(h).attempts() as usize, MAX_ATTEMPTS);
    assert!(!table.get(h).was_sent_to(mac(99)));
}

#[derive(Debug, Clone)]
enum Op2 {
    Insert,
    Dispatch(usize, usize, u32),
    Remove(usize),
    Expire(u32),
    Advance(u32),
}

fn op_strategy() -> impl Strategy<Value = Op2> {
    prop_oneof![
        3 => Just(Op2::Insert),
        2 => (0usize..64, 0usize..LANES, 0u32..40)
            .prop_map(|(i, lane, ms)| Op2::Dispatch(i, lane, ms)),
        2 => (0usize..64).prop_map(Op2::Remove),
        1 => (0u32..5).prop_map(Op2::Expire),
        1 => (0u32..30).prop_map(Op2::Advance),
    ]
}

proptest! {
    /// The table behaves like a simple model: a map from tag to deadline,
    /// expiring in deadline order, with stale tags never found.
    #[test]
    fn table_matches_model(ops in proptest::collection::vec(op_strategy(), 1..300)) {
        let t0 = Instant::now();
        let capacity = 16;
        let mut table = PendingTable::new(capacity, 7, key(), t0);
        let mut now = t0;
        // tag -> (handle, deadline if waiting)
        let mut model: BTreeMap<u64, (Handle, Option<Instant>)> = BTreeMap::new();
        let mut dead_tags: Vec<u64> = Vec::new();
        for op in ops {
            match op {
                Op2::Insert => {
                    let got = table.insert(client(9), req(1), Bucket::NONE, now);
                    prop_assert_eq!(got.is_none(), model.len() == capacity);
                    if let Some(h) = got {
                        model.insert(table.tag(h), (h, None));
                    }
                }
                Op2::Dispatch(i, lane, ms) if !model.is_empty() => {
                    let tag = *model.keys().nth(i % model.len()).unwrap();
                    let (h, _) = model[&tag];
                    // Any duration in any lane: lanes stay sorted even
                    // when the caller mixes durations.
                    let deadline = now + ms * MS;
                    if table.dispatch(h, mac(1), now, deadline, lane) {
                        model.insert(tag, (h, Some(deadline)));
                    }
                }
                Op2::Remove(i) if !model.is_empty() => {
                    let tag = *model.keys().nth(i % model.len()).unwrap();
                    let (h, _) = model.remove(&tag).unwrap();
                    table.remove(h);
                    dead_tags.push(tag);
                }
                Op2::Expire(n) => {
                    for _ in 0..n {
                        let expected = model
                            .iter()
                            .filter_map(|(t, (_, d))| d.map(|d| (d, *t)))
                            .filter(|(d, _)| *d <= now)
                            .min();
                        match table.pop_expired(now) {
                            Some(h) => {
                                let tag = table.tag(h);
                                let (d, t) = expected.expect("model has an expired entry");
                                prop_assert_eq!(table.get(h).deadline, d);
                                // Equal deadlines may come in insertion order.
                                prop_assert_eq!(model[&tag].1, Some(d));
                                let _ = t;
                                model.insert(tag, (h, None));
                            }
                            None => prop_assert!(expected.is_none()),
                        }
                    }
                }
                Op2::Advance(ms) => now += MS * ms,
                _ => {}
            }
            prop_assert_eq!(table.len(), model.len());
            for (tag, (h, _)) in &model {
                prop_assert_eq!(table.find(*tag), Ok(*h));
            }
            for tag in &dead_tags {
                if !model.contains_key(tag) {
                    prop_assert_eq!(table.find(*tag), Err(TagMiss::Stale));
                }
            }
            let min = model.values().filter_map(|(_, d)| *d).min();
            prop_assert_eq!(table.next_deadline(), min);
        }
    }
}

#[test]
fn counts_requests_whose_client_waits() {
    let now = Instant::now();
    let mut table = PendingTable::new(8, 0, key(), now);
    let a = table.insert(client(1), req(1), Bucket::NONE, now).unwrap();
    let b = table.insert(client(2), req(2), Bucket::NONE, now).unwrap();
    assert_eq!(table.unanswered_clients(), 2);
    // An answered request that lingers no longer counts, even twice marked.
    table.mark_client_answered(a);
    table.mark_client_answered(a);
    assert_eq!(table.unanswered_clients(), 1);
    table.remove(a);
    assert_eq!(table.unanswered_clients(), 1);
    // Removed without an answer (timed out, status 4 sent).
    table.remove(b);
    assert_eq!(table.unanswered_clients(), 0);
    assert!(table.is_empty());
}
