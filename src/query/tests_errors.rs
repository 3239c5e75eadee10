//! Bad-input table: every entry must be rejected with an error at a
//! sensible character position (never a panic, never a silent success).

use crate::query::{parse_filter, parse_sort, QueryError};
use std::time::{Duration, Instant};

fn expect_err(src: &str) -> QueryError {
    match parse_filter(src) {
        Ok(f) => panic!("{src:?} unexpectedly parsed as {f:?}"),
        Err(e) => e,
    }
}

#[test]
fn bad_filters_report_positions() {
    // (input, expected position, fragment the message must contain)
    let cases: &[(&str, usize, &str)] = &[
        ("title = 'abc", 8, "unterminated string"),
        ("title = \"abc\\\"", 8, "unterminated string"),
        ("'é' = 'x", 6, "unterminated string"),
        ("title === 1", 6, "unknown operator '==='"),
        ("title <> 1", 6, "unknown operator '<>'"),
        ("title == 1", 6, "unknown operator '=='"),
        ("@request.auht.id = 1", 0, "'@request.auht.id'"),
        ("@foo = 1", 0, "'@foo'"),
        ("@request.data.x = 1", 0, "unknown identifier"),
        ("views = 1e6", 8, "invalid number '1e6'"),
        ("views = 1.", 8, "invalid number"),
        ("views = 1.2.3", 8, "invalid number"),
        ("!(a = 1)", 0, "no NOT operator"),
        ("a = 1 &&", 8, "expected an expression after '&&', found end of input"),
        ("a = 1 ||", 8, "after '||'"),
        ("&& a = 1", 0, "expected an expression, found '&&'"),
        ("()", 1, "empty parentheses"),
        ("a = 1 && ()", 10, "empty parentheses"),
        ("title", 5, "expected an operator after 'title', found end of input"),
        ("title && b = 1", 6, "expected an operator after 'title', found '&&'"),
        ("title =", 7, "expected an operand after '=', found end of input"),
        ("title = &&", 8, "expected an operand after '='"),
        ("= 1", 0, "expected an expression"),
        ("a = 1)", 5, "without a matching '('"),
        ("(a = 1", 6, "expected ')' to close the '(' at position 0"),
        ("a = 1 b = 2", 6, "expected '&&', '||' or end of input, found 'b'"),
        ("a & b", 2, "expected '&&'"),
        ("a = 1 | b = 2", 6, "expected '||'"),
        ("a = 1 &&& b = 2", 8, "expected '&&'"),
        ("a = -", 4, "unexpected character '-'"),
        ("a = $", 4, "unexpected character '$'"),
        ("a / b", 2, "unexpected character '/'"),
        ("a:isset = 1", 1, "':isset' is only allowed"),
        ("@request.query.a:changed = 1", 16, "':changed' is only allowed"),
        ("title:upper = 1", 5, "unknown modifier ':upper'"),
        ("a..b = 1", 2, "empty field name"),
        ("a = b.", 6, "empty field name"),
        ("#a = 1", 0, "unknown identifier"),
        ("a = 1 = 2", 6, "expected '&&', '||' or end of input"),
    ];
    for (src, pos, fragment) in cases {
        let e = expect_err(src);
        assert_eq!(e.position, *pos, "{src:?}: {e}");
        assert!(e.message.contains(fragment), "{src:?}: {e}");
    }
}

#[test]
fn display_format() {
    let e = expect_err("title");
    assert_eq!(
        e.to_string(),
        "invalid filter at position 5: expected an operator after 'title', found end of input"
    );
}

#[test]
fn length_limit() {
    let ok = format!("a = '{}'", "x".repeat(3500 - 6));
    assert_eq!(ok.chars().count(), 3500);
    assert!(parse_filter(&ok).is_ok());
    let long = format!("a = '{}'", "x".repeat(3500 - 5));
    assert_eq!(expect_err(&long).position, 3500);
    // Characters, not bytes: 3500 two-byte characters are fine.
    let unicode = format!("a = '{}'", "é".repeat(3500 - 6));
    assert!(parse_filter(&unicode).is_ok());
}

#[test]
fn huge_number_is_rejected() {
    let src = format!("a = {}.5", "9".repeat(400));
    assert!(expect_err(&src).message.contains("out of range"));
    // Big integers that fit u64 or f64 are fine.
    assert!(parse_filter("a = 18446744073709551615").is_ok());
    assert!(parse_filter(&format!("a = {}", "9".repeat(300))).is_ok());
}

#[test]
fn comparison_limit() {
    let build = |n: usize| (0..n).map(|i| format!("a = {i}")).collect::<Vec<_>>().join(" && ");
    assert!(parse_filter(&build(200)).is_ok());
    let src = build(201);
    let e = expect_err(&src);
    let last = src.rfind("a = 200").unwrap_or(usize::MAX);
    assert_eq!(e.position, last, "{e}");
    assert!(e.message.contains("at most 200"));
}

#[test]
fn nesting_limit_without_stack_overflow() {
    let nested = |n: usize| format!("{}a = 1{}", "(".repeat(n), ")".repeat(n));
    assert!(parse_filter(&nested(64)).is_ok());
    let e = expect_err(&nested(65));
    assert_eq!(e.position, 64);
    assert!(e.message.contains("deeper than 64"));

    let start = Instant::now();
    let e = expect_err(&"(".repeat(3000));
    assert_eq!(e.position, 64);
    let e = expect_err(&"(".repeat(10_000));
    assert_eq!(e.position, 3500);
    let e = expect_err(&"(".repeat(1_000_000));
    assert_eq!(e.position, 3500);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn bad_sorts() {
    let nine = "a,b,c,d,e,f,g,h,i";
    let e = parse_sort(nine).err().unwrap_or_else(|| panic!("9 keys accepted"));
    assert_eq!(e.position, 16);
    assert!(e.message.contains("at most 8"));
    assert!(parse_sort("a,b,c,d,e,f,g,h").is_ok());
    for s in ["a,,b", ",a", "a,", "@random", "-@random", "a-b", "+", "--a", "a b"] {
        assert!(parse_sort(s).is_err(), "{s:?}");
    }
}
