use ipcs_common::wire::Reply;
use ipcs_common::Op;

use super::*;

const MS: Duration = Duration::from_millis(1);

fn policy(attempts: u32) -> RetryPolicy {
    RetryPolicy::new(100 * MS, attempts)
}

fn mul(a: u32, b: u32) -> Request {
    Request { a, b, op: Op::Mul }
}

fn reply(result: u64, server_id: u8) -> [u8; 9] {
    Reply { result, server_id }.to_bytes()
}

/// Sends at `t0`, as a driver would after the first poll.
fn started(request: Request, attempts: u32, t0: Instant) -> Exchange {
    let mut exchange = Exchange::new(request, policy(attempts));
    assert_eq!(exchange.poll(t0), Action::Send);
    exchange.on_sent(t0);
    exchange
}

#[test]
fn first_reply_answers() {
    let t0 = Instant::now();
    let none = LateAnswers::default();
    let mut exchange = started(mul(50, 1337), 3, t0);
    assert_eq!(
        exchange.poll(t0 + 10 * MS),
        Action::WaitUntil(t0 + 100 * MS)
    );
    assert_eq!(
        exchange.on_datagram(&reply(66_850, 3), t0 + 20 * MS, &none),
        Verdict::Answer
    );
    let answer = Response::Reply(Reply {
        result: 66_850,
        server_id: 3,
    });
    assert_eq!(
        exchange.poll(t0 + 20 * MS),
        Action::Done(Outcome::Answered(answer))
    );
    assert!(!exchange.may_echo(), "answered on the first attempt");
    // Once over, nothing changes it.
    assert_eq!(
        exchange.on_datagram(&reply(1, 1), t0 + 30 * MS, &none),
        Verdict::OutOfExchange
    );
    assert_eq!(
        exchange.poll(t0 + 30 * MS),
        Action::Done(Outcome::Answered(answer))
    );
}

#[test]
fn resends_after_each_timeout_then_gives_up() {
    let t0 = Instant::now();
    let mut exchange = started(mul(2, 3), 3, t0);
    assert_eq!(
        exchange.poll(t0 + 99 * MS),
        Action::WaitUntil(t0 + 100 * MS)
    );
    assert_eq!(exchange.poll(t0 + 100 * MS), Action::Send);
    exchange.on_sent(t0 + 101 * MS);
    assert_eq!(
        exchange.poll(t0 + 150 * MS),
        Action::WaitUntil(t0 + 201 * MS)
    );
    assert_eq!(exchange.poll(t0 + 201 * MS), Action::Send);
    exchange.on_sent(t0 + 202 * MS);
    assert_eq!(exchange.sent(), 3);
    assert_eq!(
        exchange.poll(t0 + 302 * MS),
        Action::Done(Outcome::NoAnswer { attempts: 3 })
    );
    assert!(exchange.may_echo());
}

#[test]
fn one_attempt_means_no_resend() {
    let t0 = Instant::now();
    let mut exchange = started(mul(2, 3), 1, t0);
    assert_eq!(
        exchange.poll(t0 + 100 * MS),
        Action::Done(Outcome::NoAnswer { attempts: 1 })
    );
}

#[test]
fn a_reply_to_an_earlier_attempt_answers_after_a_retry() {
    let t0 = Instant::now();
    let none = LateAnswers::default();
    let mut exchange = started(mul(2, 3), 3, t0);
    assert_eq!(exchange.poll(t0 + 100 * MS), Action::Send);
    exchange.on_sent(t0 + 100 * MS);
    // The first attempt's reply, late: same request, so a correct answer.
    assert_eq!(
        exchange.on_datagram(&reply(6, 1), t0 + 120 * MS, &none),
        Verdict::Answer
    );
    assert!(
        exchange.may_echo(),
        "the second attempt may still be answered"
    );
}

#[test]
fn malformed_datagrams_are_skipped_and_the_wait_goes_on() {
    let t0 = Instant::now();
    let none = LateAnswers::default();
    let mut exchange = started(mul(2, 3), 3, t0);
    for junk in [
        &[][..],
        &[0u8; 2],
        &[0u8; 10],
        &[0u8; 64],
        &[0u8][..],
        &[200u8],
    ] {
        assert!(
            matches!(
                exchange.on_datagram(junk, t0 + MS, &none),
                Verdict::Malformed(_)
            ),
            "{junk:?}"
        );
    }
    assert_eq!(exchange.poll(t0 + 2 * MS), Action::WaitUntil(t0 + 100 * MS));
    // An 8-byte reply (a server without an id) is still a reply.
    assert_eq!(
        exchange.on_datagram(&reply(6, 0)[..8], t0 + 3 * MS, &none),
        Verdict::Answer
    );
}

#[test]
fn an_error_before_any_retry_is_the_answer() {
    let t0 = Instant::now();
    let none = LateAnswers::default();
    let mut exchange = started(mul(2, 3), 3, t0);
    let error = Status::NoServer.to_bytes();
    assert_eq!(
        exchange.on_datagram(&error, t0 + MS, &none),
        Verdict::Answer
    );
    assert_eq!(
        exchange.poll(t0 + MS),
        Action::Done(Outcome::Answered(Response::Error(Status::NoServer)))
    );
}

#[test]
fn an_error_after_a_retry_waits_for_a_possible_result() {
    let t0 = Instant::now();
    let none = LateAnswers::default();
    let error = Status::TimedOut.to_bytes();

    // A result within the attempt's wait beats the held error.
    let mut exchange = started(mul(2, 3), 3, t0);
    assert_eq!(exchange.poll(t0 + 100 * MS), Action::Send);
    exchange.on_sent(t0 + 100 * MS);
    assert_eq!(
        exchange.on_datagram(&error, t0 + 110 * MS, &none),
        Verdict::HeldError(Status::TimedOut)
    );
    assert_eq!(
        exchange.poll(t0 + 110 * MS),
        Action::WaitUntil(t0 + 200 * MS)
    );
    assert_eq!(
        exchange.on_datagram(&reply(6, 2), t0 + 150 * MS, &none),
        Verdict::Answer
    );
    assert!(matches!(
        exchange.poll(t0 + 150 * MS),
        Action::Done(Outcome::Answered(Response::Reply(_)))
    ));

    // No result: the error is the answer when the wait ends, without a third send.
    let mut exchange = started(mul(2, 3), 3, t0);
    assert_eq!(exchange.poll(t0 + 100 * MS), Action::Send);
    exchange.on_sent(t0 + 100 * MS);
    exchange.on_datagram(&error, t0 + 110 * MS, &none);
    assert_eq!(
        exchange.poll(t0 + 200 * MS),
        Action::Done(Outcome::Answered(Response::Error(Status::TimedOut)))
    );
    assert_eq!(exchange.sent(), 2);
}

#[test]
fn a_late_duplicate_of_an_earlier_request_is_skipped() {
    let t0 = Instant::now();
    let mut late = LateAnswers::default();

    // 1+2 needed a retry, so its first attempt may still be answered.
    let mut first = started(
        Request {
            a: 1,
            b: 2,
            op: Op::Add,
        },
        3,
        t0,
    );
    assert_eq!(first.poll(t0 + 100 * MS), Action::Send);
    first.on_sent(t0 + 100 * MS);
    assert_eq!(
        first.on_datagram(&reply(3, 1), t0 + 110 * MS, &late),
        Verdict::Answer
    );
    late.remember(&first, t0 + 110 * MS);
    assert_eq!(late.len(), 1);

    // 2*5 sees the echo of 1+2 (3) before its own answer (10).
    let mut second = started(mul(2, 5), 3, t0 + 111 * MS);
    assert_eq!(
        second.on_datagram(&reply(3, 1), t0 + 120 * MS, &late),
        Verdict::LateDuplicate
    );
    assert_eq!(
        second.on_datagram(&reply(10, 2), t0 + 130 * MS, &late),
        Verdict::Answer
    );

    // A request whose answer is also 3 takes a 3 as its own: it is correct.
    let mut third = started(
        Request {
            a: 3,
            b: 1,
            op: Op::Mul,
        },
        3,
        t0 + 140 * MS,
    );
    assert_eq!(
        third.on_datagram(&reply(3, 1), t0 + 150 * MS, &late),
        Verdict::Answer
    );
}

#[test]
fn late_answers_expire_and_stay_bounded() {
    let t0 = Instant::now();
    let mut late = LateAnswers::default();
    let given_up = |n: u32| {
        let mut exchange = started(mul(n, 1), 1, t0);
        assert!(matches!(
            exchange.poll(t0 + 100 * MS),
            Action::Done(Outcome::NoAnswer { .. })
        ));
        exchange
    };
    let budget = policy(1).budget();
    late.remember(&given_up(7), t0);
    assert!(late.expects(7, t0 + budget));
    assert!(!late.expects(7, t0 + budget + LateAnswers::LINGER));
    assert!(!late.expects(8, t0));

    for n in 100..100 + 2 * LateAnswers::CAPACITY as u32 {
        late.remember(&given_up(n), t0);
    }
    assert_eq!(late.len(), LateAnswers::CAPACITY);
    assert!(!late.expects(100, t0), "the oldest made room");
    assert!(late.expects(100 + 2 * LateAnswers::CAPACITY as u64 - 1, t0));

    // An exchange answered on its first attempt leaves nothing to expect.
    let mut once = LateAnswers::default();
    let mut exchange = started(mul(4, 4), 3, t0);
    exchange.on_datagram(&reply(16, 1), t0 + MS, &once.clone());
    once.remember(&exchange, t0 + MS);
    assert!(once.is_empty());
}

#[test]
fn a_datagram_before_the_first_send_is_not_an_answer() {
    let t0 = Instant::now();
    let mut exchange = Exchange::new(mul(2, 3), policy(3));
    assert_eq!(
        exchange.on_datagram(&reply(6, 1), t0, &LateAnswers::default()),
        Verdict::OutOfExchange
    );
    assert_eq!(exchange.poll(t0), Action::Send);
}

#[test]
fn policy_is_never_zero() {
    let policy = RetryPolicy::new(Duration::ZERO, 0);
    assert_eq!(policy.attempts(), 1);
    assert_eq!(policy.timeout(), MS);
    assert_eq!(RetryPolicy::default().budget(), Duration::from_secs(3));
}
