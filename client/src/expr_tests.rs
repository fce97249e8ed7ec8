use super::*;

fn req(a: u32, op: Op, b: u32) -> Request {
    Request { a, b, op }
}

#[test]
fn timmys_example() {
    assert_eq!(parse_expr("50*1337"), Ok(req(50, Op::Mul, 1337)));
    assert_eq!(parse_expr("500 + 350"), Ok(req(500, Op::Add, 350)));
}

#[test]
fn accepted_forms() {
    let cases: &[(&str, Request)] = &[
        ("1+2", req(1, Op::Add, 2)),
        ("1*2", req(1, Op::Mul, 2)),
        ("1 +2", req(1, Op::Add, 2)),
        ("1+ 2", req(1, Op::Add, 2)),
        ("1 + 2", req(1, Op::Add, 2)),
        ("   1   *   2   ", req(1, Op::Mul, 2)),
        ("\t7\t*\t6\t", req(7, Op::Mul, 6)),
        // A CRLF file's `\r` is whitespace, not garbage.
        ("3+4\r", req(3, Op::Add, 4)),
        // Leading zeros are still decimal.
        ("007+010", req(7, Op::Add, 10)),
        ("0000000000004294967295*1", req(u32::MAX, Op::Mul, 1)),
    ];
    for (line, want) in cases {
        assert_eq!(parse_expr(line).as_ref(), Ok(want), "line {line:?}");
    }
}

#[test]
fn operand_boundaries() {
    for (text, value) in [
        ("0", 0u32),
        ("1", 1),
        ("4294967294", u32::MAX - 1),
        ("4294967295", u32::MAX),
    ] {
        for op in Op::ALL {
            let line = format!("{text}{op}{text}");
            assert_eq!(parse_expr(&line), Ok(req(value, op, value)), "{line}");
            let line = format!("{text} {op} 1");
            assert_eq!(parse_expr(&line), Ok(req(value, op, 1)), "{line}");
        }
    }
}

#[test]
fn just_over_the_boundary_is_too_large() {
    for line in ["4294967296+1", "1+4294967296", "4294967296 * 4294967296"] {
        assert_eq!(
            parse_expr(line),
            Err(ExprError::TooLarge("4294967296".into())),
            "{line}"
        );
    }
    assert_eq!(
        parse_expr("99999999999999999999999999*2"),
        Err(ExprError::TooLarge("9999999999999999…".into()))
    );
}

#[test]
fn every_rejection_with_its_explanation() {
    use ExprError::*;
    let cases: &[(&str, ExprError, &str)] = &[
        ("", Empty, "nothing to compute"),
        ("   \t ", Empty, "nothing to compute"),
        ("-5+3", Negative, "negative numbers are not accepted"),
        ("5+-3", Negative, "negative numbers are not accepted"),
        ("5 * -3", Negative, "negative numbers are not accepted"),
        ("\u{2212}5+3", Negative, "negative numbers are not accepted"),
        ("+5+3", PlusSign, "a + sign before a number is not accepted"),
        ("5*+3", PlusSign, "a + sign before a number is not accepted"),
        (
            "+",
            MissingOperand(Side::First),
            "the first operand is missing",
        ),
        (
            "*5",
            MissingOperand(Side::First),
            "the first operand is missing",
        ),
        (
            "5+",
            MissingOperand(Side::Second),
            "the second operand is missing",
        ),
        (
            "5 *  ",
            MissingOperand(Side::Second),
            "the second operand is missing",
        ),
        (
            "5**3",
            MissingOperand(Side::Second),
            "the second operand is missing",
        ),
        ("1234", MissingOperator, "there is no operator"),
        (" 12 ", MissingOperator, "there is no operator"),
        (
            "5-3",
            UnknownOperator("-".into()),
            "'-' is not a supported operator (only + and * are)",
        ),
        (
            "5 - 3",
            UnknownOperator("-".into()),
            "'-' is not a supported operator (only + and * are)",
        ),
        (
            "5--3",
            UnknownOperator("-".into()),
            "'-' is not a supported operator (only + and * are)",
        ),
        (
            "6/3",
            UnknownOperator("/".into()),
            "'/' is not a supported operator (only + and * are)",
        ),
        (
            "6 % 4",
            UnknownOperator("%".into()),
            "'%' is not a supported operator (only + and * are)",
        ),
        (
            "2^8",
            UnknownOperator("^".into()),
            "'^' is not a supported operator (only + and * are)",
        ),
        (
            "5x3",
            UnknownOperator("x".into()),
            "'x' is not a supported operator (only + and * are)",
        ),
        (
            "5 × 3",
            UnknownOperator("×".into()),
            "'×' is not a supported operator (only + and * are)",
        ),
        (
            "1.+2",
            UnknownOperator(".".into()),
            "'.' is not a supported operator (only + and * are)",
        ),
        (
            "0x1f+1",
            Hexadecimal("0x1f".into()),
            "'0x1f' is hexadecimal, not decimal",
        ),
        (
            "1*0XFF",
            Hexadecimal("0XFF".into()),
            "'0XFF' is hexadecimal, not decimal",
        ),
        (
            "1.5+2",
            NotWhole("1.5".into()),
            "'1.5' is not a whole number",
        ),
        (
            "2*0.25",
            NotWhole("0.25".into()),
            "'0.25' is not a whole number",
        ),
        ("abc", NotANumber("abc".into()), "'abc' is not a number"),
        (
            "hello world",
            NotANumber("hello".into()),
            "'hello' is not a number",
        ),
        ("x+1", NotANumber("x".into()), "'x' is not a number"),
        ("1+abc", NotANumber("abc".into()), "'abc' is not a number"),
        (
            "12abc+3",
            NotANumber("12abc".into()),
            "'12abc' is not a number",
        ),
        ("1e5+1", NotANumber("1e5".into()), "'1e5' is not a number"),
        (
            "1_000+1",
            NotANumber("1_000".into()),
            "'1_000' is not a number",
        ),
        (
            "1,000+1",
            NotANumber("1,000".into()),
            "'1,000' is not a number",
        ),
        (
            "1+2abc",
            NotANumber("2abc".into()),
            "'2abc' is not a number",
        ),
        ("5 abc", NotANumber("abc".into()), "'abc' is not a number"),
        ("5+-", NotANumber("-".into()), "'-' is not a number"),
        (
            "\u{ff11}+2",
            NotANumber("\u{ff11}".into()),
            "'\u{ff11}' is not a number",
        ),
        (
            "1 000+3",
            SpaceInNumber("1 000".into()),
            "'1 000' has a space inside a number",
        ),
        (
            "1+2 3",
            SpaceInNumber("2 3".into()),
            "'2 3' has a space inside a number",
        ),
        (
            "1+2+3",
            ExtraOperation,
            "only one operation per line is supported",
        ),
        (
            "1*2 * 3",
            ExtraOperation,
            "only one operation per line is supported",
        ),
        (
            "1+2-3",
            ExtraOperation,
            "only one operation per line is supported",
        ),
        (
            "1+2=",
            Trailing("=".into()),
            "unexpected '=' after the expression",
        ),
        (
            "1+2 )",
            Trailing(")".into()),
            "unexpected ')' after the expression",
        ),
        (
            "1+2 abc  ",
            Trailing("abc".into()),
            "unexpected 'abc' after the expression",
        ),
        (
            "1+2+",
            Trailing("+".into()),
            "unexpected '+' after the expression",
        ),
    ];
    for (line, error, problem) in cases {
        let got = parse_expr(line);
        assert_eq!(got.as_ref(), Err(error), "line {line:?}");
        assert_eq!(
            error.to_string(),
            format!("{problem}; {ACCEPTED}"),
            "line {line:?}"
        );
    }
}

#[test]
fn explanations_are_one_short_line_whatever_the_input() {
    let long_garbage = "z".repeat(10_000);
    let escape = "\u{1b}[2J\u{7}+1";
    for line in [long_garbage.as_str(), escape, "1+\u{0}", "1+2\n3"] {
        let message = parse_expr(line).unwrap_err().to_string();
        assert!(!message.contains('\n'), "{message:?}");
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert!(message.chars().count() < 140, "{message:?}");
    }
    assert_eq!(
        parse_expr(&long_garbage),
        Err(ExprError::NotANumber("zzzzzzzzzzzzzzzz…".into()))
    );
    assert_eq!(
        parse_expr(escape),
        Err(ExprError::NotANumber("\\u{1b}[2J\\u{7}".into()))
    );
}

#[test]
fn displays_back_as_typed_canonically() {
    // The request's own Display is what a person would type, so it parses back.
    for line in ["50 * 1337", "4294967295+0"] {
        let request = parse_expr(line).unwrap();
        assert_eq!(parse_expr(&request.to_string()), Ok(request));
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn space() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[ \t]{0,3}").unwrap()
    }

    proptest! {
        #[test]
        fn every_well_formed_line_parses_to_its_request(
            a in any::<u32>(), b in any::<u32>(), mul in any::<bool>(),
            s0 in space(), s1 in space(), s2 in space(), s3 in space(),
        ) {
            let op = if mul { Op::Mul } else { Op::Add };
            let line = format!("{s0}{a}{s1}{op}{s2}{b}{s3}");
            prop_assert_eq!(parse_expr(&line), Ok(req(a, op, b)));
        }

        #[test]
        fn any_input_is_a_request_or_a_one_line_explanation(line in "\\PC{0,40}|[-+*/0-9 x.]{0,20}") {
            match parse_expr(&line) {
                Ok(request) => prop_assert_eq!(parse_expr(&request.to_string()), Ok(request)),
                Err(error) => {
                    let message = error.to_string();
                    prop_assert!(message.ends_with(ACCEPTED));
                    prop_assert!(!message.chars().any(char::is_control));
                }
            }
        }
    }
}
