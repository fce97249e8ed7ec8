use super::*;

const MS: Duration = Duration::from_millis(1);

/// The longest window (a server with 62.5 ms deadlines or more).
const WINDOW: Duration = Duration::from_millis(500);

fn policy() -> EjectionPolicy {
    EjectionPolicy::default()
}

#[test]
fn a_server_that_answered_since_the_send_is_slow_not_silent() {
    let t0 = Instant::now();
    let mut h = Health::default();
    h.on_answer(t0 + 10 * MS, false);
    for k in 0..100 {
        let v = h.on_timeout(t0 + 5 * MS, t0 + (30 + k) * MS, WINDOW, &policy(), |_| true);
        assert_eq!(v, TimeoutVerdict::Slow);
    }
    assert_eq!(h.silent_events(), 0);
}

#[test]
fn one_frame_of_timeouts_is_one_event_and_never_ejects() {
    let t0 = Instant::now();
    let mut h = Health::default();
    // 32 requests sent in one batch all time out, long after.
    for _ in 0..32 {
        let v = h.on_timeout(t0, t0 + 900 * MS, WINDOW, &policy(), |_| true);
        assert_eq!(v, TimeoutVerdict::Silent);
    }
    assert_eq!(h.silent_events(), 1);
}

#[test]
fn silent_for_the_window_while_others_answer_is_dead() {
    let t0 = Instant::now();
    let mut h = Health::default();
    let p = policy();
    // Three distinct events, but within the silence window: not yet.
    for k in 0..3 {
        let v = h.on_timeout(t0 + k * MS, t0 + (20 + k) * MS, WINDOW, &p, |_| true);
        assert_eq!(v, TimeoutVerdict::Silent);
    }
    // Past the window, others answered: dead.
    let v = h.on_timeout(t0 + 490 * MS, t0 + 510 * MS, WINDOW, &p, |since| {
        assert_eq!(since, t0);
        true
    });
    assert_eq!(v, TimeoutVerdict::Dead);
    assert_eq!(h.eject(t0 + 510 * MS, &p), 5000 * MS);
    assert!(h.is_ejected(t0 + 5_509 * MS));
    assert!(h.available(t0 + 5_510 * MS));
    assert_eq!(
        h.on_timeout(t0 + 600 * MS, t0 + 700 * MS, WINDOW, &p, |_| true),
        TimeoutVerdict::Ejected
    );
}

#[test]
fn nobody_answering_ejects_nobody() {
    let t0 = Instant::now();
    let mut h = Health::default();
    for k in 0..100 {
        let v = h.on_timeout(
            t0 + k * 10 * MS,
            t0 + (k * 10 + 20) * MS,
            WINDOW,
            &policy(),
            |_| false,
        );
        assert_eq!(v, TimeoutVerdict::Silent);
    }
}

#[test]
fn any_answer_clears_the_record() {
    let t0 = Instant::now();
    let mut h = Health::default();
    let p = policy();
    for k in 0..5 {
        h.on_timeout(t0 + k * MS, t0 + (20 + k) * MS, WINDOW, &p, |_| true);
    }
    h.on_answer(t0 + 400 * MS, false);
    // The window counts again from the next silent attempt.
    let v = h.on_timeout(t0 + 450 * MS, t0 + 600 * MS, WINDOW, &p, |_| true);
    assert_eq!(v, TimeoutVerdict::Silent);
    assert_eq!(h.silent_events(), 1);
}

#[test]
fn probation_ejects_at_the_first_silent_event_for_twice_as_long() {
    let t0 = Instant::now();
    let mut h = Health::default();
    let p = policy();
    assert_eq!(h.eject(t0, &p), 5_000 * MS);
    let back = t0 + 5_000 * MS;
    assert_eq!(
        h.on_timeout(back, back + 20 * MS, WINDOW, &p, |_| true),
        TimeoutVerdict::Dead
    );
    assert_eq!(h.eject(back + 20 * MS, &p), 10_000 * MS);
    // A later answer while in rotation ends probation.
    let again = back + 10_020 * MS;
    h.on_answer(again, false);
    assert_eq!(
        h.on_timeout(again + MS, again + 30 * MS, WINDOW, &p, |_| true),
        TimeoutVerdict::Silent
    );
    assert_eq!(h.eject(again + 30 * MS, &p), 5_000 * MS);
}

#[test]
fn cool_downs_stop_at_the_maximum() {
    let t0 = Instant::now();
    let mut h = Health::default();
    let p = policy();
    let mut last = Duration::ZERO;
    for _ in 0..40 {
        last = h.eject(t0, &p);
    }
    assert_eq!(last, p.max_cooldown);
}

#[test]
fn error_share_needs_volume() {
    let t0 = Instant::now();
    let mut h = Health::default();
    for k in 0..10 {
        h.on_answer(t0, k % 2 == 0);
    }
    assert_eq!(h.take_error_share(20), None);
    for k in 0..40 {
        h.on_answer(t0, k % 4 == 0);
    }
    assert_eq!(h.take_error_share(20), Some(25));
    assert_eq!(h.take_error_share(20), None);
}

#[test]
fn the_cap_is_a_share_of_the_listed_servers_but_at_least_one() {
    let p = policy();
    assert_eq!(p.max_ejected(1), 1);
    assert_eq!(p.max_ejected(2), 1);
    assert_eq!(p.max_ejected(3), 1);
    assert_eq!(p.max_ejected(4), 2);
    assert_eq!(p.max_ejected(10), 5);
}

#[test]
fn the_silence_window_is_eight_deadlines_within_the_bounds() {
    let p = policy();
    let watched = 500 * MS;
    assert_eq!(p.silence_window(5 * MS, watched), 100 * MS);
    assert_eq!(p.silence_window(20 * MS, watched), 160 * MS);
    assert_eq!(p.silence_window(50 * MS, watched), 400 * MS);
    assert_eq!(p.silence_window(250 * MS, watched), 500 * MS);
}

#[test]
fn a_server_not_yet_watched_for_the_longest_window_gets_it() {
    let p = policy();
    assert_eq!(p.silence_window(5 * MS, Duration::ZERO), 500 * MS);
    assert_eq!(p.silence_window(5 * MS, 499 * MS), 500 * MS);
    assert_eq!(p.silence_window(5 * MS, 500 * MS), 100 * MS);
}
