//! The real `calc` prompt in a pseudo-terminal, as Timmy sees it, against a
//! real UDP responder. HOME and XDG_DATA_HOME point at a temporary directory
//! so the history never touches the real user's.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use expectrl::{Eof, Session, WaitStatus};
use ipcs_common::wire::Status;
use support::{Responder, Step, TempDir};

/// How long any one expected output may take to appear.
const EXPECT_TIMEOUT: Duration = Duration::from_secs(10);
const PROMPT: &str = "calc> ";
const UP_ARROW: &str = "\x1b[A";
const CTRL_C: &str = "\x03";
const CTRL_D: &str = "\x04";

fn spawn(home: &Path, args: &[&str]) -> Session {
    let mut command = Command::new(env!("CARGO_BIN_EXE_calc"));
    command
        .args(args)
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("TERM", "xterm")
        .env_remove("RUST_LOG");
    let mut session = Session::spawn(command).expect("spawn calc in a pty");
    session.set_expect_timeout(Some(EXPECT_TIMEOUT));
    session
}

/// Waits for the process to end and returns its exit code.
fn exit_code(session: &mut Session) -> i32 {
    session.expect(Eof).expect("calc exits");
    match session.get_process().wait().expect("wait for calc") {
        WaitStatus::Exited(_, code) => code,
        other => panic!("calc ended with {other:?}"),
    }
}

fn history_file(home: &Path) -> std::path::PathBuf {
    home.join("data").join("ipcs").join("calc_history")
}

#[test]
fn timmy_computes_gets_explanations_and_leaves() {
    let responder = Responder::answering(3);
    let home = TempDir::new("pty");
    let target = responder.addr().to_string();
    let mut calc = spawn(home.path(), &[&target]);

    calc.expect(format!("calc: asking {target}")).unwrap();
    calc.expect(PROMPT).unwrap();
    calc.send_line("50*1337").unwrap();
    calc.expect("\n66850  (server 3)").unwrap();

    calc.expect(PROMPT).unwrap();
    calc.send_line("500 - 350").unwrap();
    calc.expect("error: '-' is not a supported operator (only + and * are); expected a+b or a*b with whole numbers 0..=4294967295").unwrap();

    calc.expect(PROMPT).unwrap();
    calc.send_line("-5+3").unwrap();
    calc.expect("error: negative numbers are not accepted")
        .unwrap();

    calc.expect(PROMPT).unwrap();
    calc.send_line("help").unwrap();
    calc.expect("a*b   multiplies").unwrap();
    calc.expect("Ctrl-C clears the line").unwrap();

    // Ctrl-C drops the half-typed `12`; otherwise this would be 121+2.
    calc.expect(PROMPT).unwrap();
    calc.send("12").unwrap();
    calc.send(CTRL_C).unwrap();
    calc.expect(PROMPT).unwrap();
    calc.send_line("1+2").unwrap();
    calc.expect("\n3  (server 3)").unwrap();

    calc.expect(PROMPT).unwrap();
    calc.send_line("exit").unwrap();
    assert_eq!(exit_code(&mut calc), 0);

    // The rejected lines were never sent.
    assert_eq!(responder.datagrams(), 2);
    let history = std::fs::read_to_string(history_file(home.path())).unwrap();
    for line in ["50*1337", "500 - 350", "help", "1+2"] {
        assert!(
            history.lines().any(|l| l == line),
            "{line} not in {history:?}"
        );
    }
    assert!(!history.contains("exit"), "{history:?}");
}

#[test]
fn history_survives_the_session_and_ctrl_d_leaves() {
    let responder = Responder::answering(5);
    let home = TempDir::new("pty-history");
    let target = responder.addr().to_string();

    let mut first = spawn(home.path(), &[&target]);
    first.expect(PROMPT).unwrap();
    first.send_line("6*7").unwrap();
    first.expect("\n42  (server 5)").unwrap();
    first.expect(PROMPT).unwrap();
    first.send(CTRL_D).unwrap();
    assert_eq!(exit_code(&mut first), 0);

    // A new session recalls `6*7` with the Up arrow.
    let mut second = spawn(home.path(), &[&target]);
    second.expect(PROMPT).unwrap();
    second.send(UP_ARROW).unwrap();
    second.send("\r").unwrap();
    second.expect("\n42  (server 5)").unwrap();
    second.expect(PROMPT).unwrap();
    second.send_line("quit").unwrap();
    assert_eq!(exit_code(&mut second), 0);
    assert_eq!(responder.received().len(), 2);
}

#[test]
fn the_prompt_shows_service_errors_and_silence_in_words() {
    let responder = Responder::start(1, vec![Step::error(Status::NoServer)], Step::Drop);
    let home = TempDir::new("pty-errors");
    let target = responder.addr().to_string();
    let args = [&target[..], "--timeout", "100ms", "--attempts", "2"];
    let mut calc = spawn(home.path(), &args);
    calc.expect(PROMPT).unwrap();
    calc.send_line("1+2").unwrap();
    calc.expect("error: no server is available right now")
        .unwrap();
    calc.expect(PROMPT).unwrap();
    calc.send_line("1+2").unwrap();
    calc.expect(format!("error: no answer from {target} after 2 attempts"))
        .unwrap();
    calc.expect(PROMPT).unwrap();
    calc.send_line("exit").unwrap();
    assert_eq!(exit_code(&mut calc), 0);
}

#[test]
fn hide_server_at_the_prompt() {
    let responder = Responder::answering(3);
    let home = TempDir::new("pty-hide");
    let target = responder.addr().to_string();
    let mut calc = spawn(home.path(), &[&target, "--show-server=false"]);
    calc.expect(PROMPT).unwrap();
    calc.send_line("50*1337").unwrap();
    calc.expect("\n66850\r\n").unwrap();
    calc.expect(PROMPT).unwrap();
    calc.send_line("exit").unwrap();
    assert_eq!(exit_code(&mut calc), 0);
}
