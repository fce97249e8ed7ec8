//! `CalcClient` and `evaluate` against a real UDP responder on 127.0.0.1.

mod support;

use std::time::{Duration, Instant};

use ipcs_client::{evaluate, CalcClient, EvalError, RetryPolicy, Target, TransportError};
use ipcs_common::wire::{Reply, Request, Response, Status};
use ipcs_common::Op;
use support::{Responder, Step, DECOY_RESULT};

const SHORT: Duration = Duration::from_millis(100);

fn connect(responder: &Responder, timeout: Duration, attempts: u32) -> CalcClient {
    let target = Target::from_addr(responder.addr());
    CalcClient::connect(target, RetryPolicy::new(timeout, attempts)).expect("connect")
}

fn mul(a: u32, b: u32) -> Request {
    Request { a, b, op: Op::Mul }
}

#[test]
fn timmys_request_gets_its_result_and_server() {
    let responder = Responder::answering(3);
    let mut client = connect(&responder, Duration::from_secs(1), 3);
    let reply = evaluate(&mut client, "50*1337").unwrap();
    assert_eq!(
        reply,
        Reply {
            result: 66_850,
            server_id: 3
        }
    );
    assert_eq!(responder.received(), vec![mul(50, 1337)]);
    assert_eq!(client.stats().sent, 1);
    assert_eq!(client.stats().retries, 0);
}

#[test]
fn boundaries_travel_intact() {
    let responder = Responder::answering(7);
    let mut client = connect(&responder, Duration::from_secs(1), 3);
    for (line, result) in [
        ("4294967295*4294967295", 18_446_744_065_119_617_025u64),
        ("4294967295 + 4294967295", 8_589_934_590),
        ("0*0", 0),
        ("0 + 1", 1),
    ] {
        assert_eq!(
            evaluate(&mut client, line).unwrap().result,
            result,
            "{line}"
        );
    }
    assert_eq!(responder.received().len(), 4);
}

#[test]
fn a_rejected_line_is_never_sent() {
    let responder = Responder::answering(1);
    let mut client = connect(&responder, SHORT, 3);
    for line in ["5-3", "-1+2", "4294967296+1", "6/2", "hello", "1+2+3", ""] {
        let error = evaluate(&mut client, line).unwrap_err();
        assert!(matches!(error, EvalError::Rejected(_)), "{line}: {error}");
    }
    assert_eq!(evaluate(&mut client, "1+1").unwrap().result, 2);
    assert_eq!(responder.datagrams(), 1, "only 1+1 went out");
}

#[test]
fn a_dropped_request_is_sent_again() {
    let responder = Responder::start(2, vec![Step::Drop, Step::Drop], Step::ANSWER);
    let mut client = connect(&responder, SHORT, 3);
    let reply = evaluate(&mut client, "6*7").unwrap();
    assert_eq!(reply.result, 42);
    assert_eq!(
        responder.received(),
        vec![mul(6, 7); 3],
        "the same request thrice"
    );
    assert_eq!(client.stats().retries, 2);
}

#[test]
fn a_late_reply_to_the_first_attempt_answers_the_retried_request() {
    // The first reply comes after the retry went out; the second is dropped.
    let script = vec![
        Step::Answer {
            after: 3 * SHORT / 2,
        },
        Step::Drop,
    ];
    let responder = Responder::start(4, script, Step::Drop);
    let mut client = connect(&responder, SHORT, 3);
    let reply = evaluate(&mut client, "6*7").unwrap();
    assert_eq!(reply.result, 42);
    assert_eq!(responder.received().len(), 2);
}

#[test]
fn error_replies_are_shown_in_words_and_not_retried() {
    for status in Status::ALL {
        let responder = Responder::start(1, vec![], Step::error(status));
        let mut client = connect(&responder, SHORT, 3);
        let error = evaluate(&mut client, "1+2").unwrap_err();
        assert!(
            matches!(error, EvalError::Service(s) if s == status),
            "{error}"
        );
        assert_eq!(error.to_string(), status.describe());
        assert_eq!(responder.received().len(), 1, "{status:?} retried");
    }
    let responder = Responder::start(1, vec![], Step::error(Status::NoServer));
    let mut client = connect(&responder, SHORT, 3);
    let message = evaluate(&mut client, "1+2").unwrap_err().to_string();
    assert_eq!(message, "no server is available right now");
}

#[test]
fn an_error_to_an_earlier_attempt_does_not_hide_a_result() {
    // Attempt 1 is answered "timed out" only after attempt 2 went out, and
    // attempt 2's result follows within its wait: the result wins.
    let timeout = Duration::from_millis(200);
    let script = vec![
        Step::Error {
            status: Status::TimedOut,
            after: Duration::from_millis(250),
        },
        Step::Answer {
            after: Duration::from_millis(100),
        },
    ];
    let responder = Responder::start(5, script, Step::Drop);
    let mut client = connect(&responder, timeout, 3);
    let reply = evaluate(&mut client, "2*21").unwrap();
    assert_eq!(reply.result, 42);
    assert_eq!(responder.received().len(), 2);

    // When no result follows, the held error is the answer, with no third send.
    let script = vec![Step::Drop, Step::error(Status::Overloaded), Step::ANSWER];
    let responder = Responder::start(5, script, Step::ANSWER);
    let mut client = connect(&responder, SHORT, 3);
    let error = evaluate(&mut client, "2*21").unwrap_err();
    assert!(
        matches!(error, EvalError::Service(Status::Overloaded)),
        "{error}"
    );
    assert_eq!(responder.received().len(), 2);
}

#[test]
fn a_reply_from_a_wrong_source_is_ignored() {
    // The decoy, from another port with a wrong result, arrives first.
    let responder = Responder::start(3, vec![], Step::DecoyThenAnswer);
    let mut client = connect(&responder, Duration::from_secs(1), 3);
    for _ in 0..3 {
        let reply = evaluate(&mut client, "50*1337").unwrap();
        assert_ne!(reply.result, DECOY_RESULT, "took the decoy");
        assert_eq!(
            reply,
            Reply {
                result: 66_850,
                server_id: 3
            }
        );
    }

    // Only decoys: nothing counts as an answer.
    let responder = Responder::start(3, vec![], Step::Elsewhere);
    let mut client = connect(&responder, SHORT, 2);
    let error = client.request(mul(50, 1337)).unwrap_err();
    assert!(
        matches!(error, TransportError::NoAnswer { attempts: 2, .. }),
        "{error}"
    );
    assert_eq!(responder.received().len(), 2);
}

#[test]
fn datagrams_that_are_not_responses_are_skipped() {
    let responder = Responder::start(6, vec![], Step::JunkThenAnswer);
    let mut client = connect(&responder, Duration::from_secs(1), 3);
    let reply = evaluate(&mut client, "3+4").unwrap();
    assert_eq!(reply.result, 7);
    assert!(client.stats().malformed >= 3, "{:?}", client.stats());
    assert_eq!(client.stats().retries, 0);
}

#[test]
fn silence_ends_with_no_answer_after_the_attempts() {
    let responder = Responder::silent();
    let mut client = connect(&responder, SHORT, 3);
    let started = Instant::now();
    let error = client.request(mul(1, 2)).unwrap_err();
    let elapsed = started.elapsed();
    let name = responder.addr().to_string();
    assert_eq!(
        error.to_string(),
        format!("no answer from {name} after 3 attempts")
    );
    assert_eq!(responder.received().len(), 3);
    // It waited out every attempt, and did not hang.
    assert!(elapsed >= 3 * SHORT, "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
fn nothing_listening_says_so() {
    // A port that was just ours and is now closed: the host answers ICMP.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let target = Target::from_addr(addr);
    let mut client = CalcClient::connect(target, RetryPolicy::new(SHORT, 2)).unwrap();
    let error = client.request(mul(1, 2)).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "no answer from {addr} after 2 attempts (its host says nothing listens on that port)"
        )
    );
}

#[test]
fn a_late_duplicate_of_the_previous_request_is_not_taken_for_the_next() {
    // 1+2: attempt 1 answered late (after attempt 2, which is answered).
    // 2*5: attempt 1 dropped, so the 1+2 echo (3) arrives while 2*5 waits;
    // attempt 2 answered. Times are from the responder's receipt.
    let timeout = Duration::from_millis(200);
    let script = vec![
        Step::Answer {
            after: Duration::from_millis(300),
        },
        Step::ANSWER,
        Step::Drop,
        Step::ANSWER,
    ];
    let responder = Responder::start(8, script, Step::ANSWER);
    let mut client = connect(&responder, timeout, 3);
    assert_eq!(evaluate(&mut client, "1+2").unwrap().result, 3);
    assert_eq!(evaluate(&mut client, "2*5").unwrap().result, 10);
    let stats = client.stats();
    // However the scheduler ordered things, the echo was skipped somewhere.
    assert_eq!(stats.late_duplicates + stats.stale, 1, "{stats:?}");
}

#[test]
fn many_requests_on_one_socket() {
    let responder = Responder::answering(2);
    let mut client = connect(&responder, Duration::from_secs(1), 3);
    let local = client.local_addr().unwrap();
    for a in 0..200u32 {
        let response = client.request(mul(a, a + 1)).unwrap();
        assert_eq!(
            response,
            Response::Reply(Reply {
                result: u64::from(a) * u64::from(a + 1),
                server_id: 2
            })
        );
    }
    assert_eq!(client.local_addr().unwrap(), local, "one socket throughout");
    assert_eq!(client.stats().sent, 200);
}
