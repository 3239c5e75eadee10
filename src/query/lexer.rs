//! Tokenizer for filter text.
//!
//! The whole input is tokenized up front: the input is capped at
//! [`MAX_FILTER_CHARS`] characters, so the token vector is small and the
//! parser gets cheap lookahead. Positions are 0-based *character* offsets
//! (not bytes) because they are shown to API users who count characters.

use crate::query::ast::Op;
use crate::query::QueryError;

/// Longest accepted filter, in characters (PocketBase's limit).
pub const MAX_FILTER_CHARS: usize = 3500;

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    LParen,
    RParen,
    And,
    Or,
    Op(Op),
    /// Validated number text (`-?digits(.digits)?`), converted by the parser.
    Number(String),
    /// String literal content with quote escapes already removed.
    Str(String),
    /// Identifier or keyword (`true`, `false`, `null`), unvalidated.
    Ident(String),
    Eof,
}

/// A token with its start position and source text (for error messages).
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub pos: usize,
    pub text: String,
}

impl Token {
    /// How the token is named in "found ..." error messages. Long tokens are
    /// shortened so an error about a 3000-character string stays readable.
    pub fn describe(&self) -> String {
        match self.kind {
            TokenKind::Eof => "end of input".to_string(),
            // The text already carries its quotes; don't wrap it in more.
            TokenKind::Str(_) => format!("string {}", snippet(&self.text)),
            _ => quote_snippet(&self.text),
        }
    }
}

/// `'text'`, truncated to 40 characters with an ellipsis.
fn quote_snippet(text: &str) -> String {
    format!("'{}'", snippet(text))
}

/// `text` truncated to 40 characters with an ellipsis.
fn snippet(text: &str) -> String {
    let mut out: String = text.chars().take(40).collect();
    if text.chars().nth(40).is_some() {
        out.push('…');
    }
    out
}

/// Characters that may start an identifier (PocketBase: letters, `_`, `@`,
/// `#`).
pub(crate) fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '@' || c == '#'
}

/// Characters that may continue an identifier. `:` is included so modifiers
/// and collection aliases lex as part of the identifier.
pub(crate) fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.' || c == ':'
}

fn is_op_char(c: char) -> bool {
    matches!(c, '=' | '!' | '>' | '<' | '~' | '?')
}

fn err(position: usize, message: impl Into<String>) -> QueryError {
    QueryError {
        position,
        message: message.into(),
    }
}

/// Splits `src` into tokens, ending with a single `Eof` token.
///
/// Operators are lexed greedily as the longest run of operator characters
/// and then looked up, so `===` or `<>` are reported as one unknown operator
/// instead of being split into confusing pieces.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, QueryError> {
    if src.chars().nth(MAX_FILTER_CHARS).is_some() {
        return Err(err(
            MAX_FILTER_CHARS,
            format!("filter is longer than the maximum of {MAX_FILTER_CHARS} characters"),
        ));
    }
    let chars: Vec<char> = src.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let start = i;
        let text_of = |end: usize| chars[start..end].iter().collect::<String>();
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let kind = match c {
            '(' => {
                i += 1;
                TokenKind::LParen
            }
            ')' => {
                i += 1;
                TokenKind::RParen
            }
            '&' | '|' => {
                let kind = lex_logic(c, next, i)?;
                i += 2;
                kind
            }
            '\'' | '"' => {
                let (content, end) = lex_string(&chars, i)?;
                i = end;
                TokenKind::Str(content)
            }
            c if is_op_char(c) => {
                let (op, end) = lex_op(&chars, i)?;
                i = end;
                TokenKind::Op(op)
            }
            c if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let (text, end) = lex_number(&chars, i)?;
                i = end;
                TokenKind::Number(text)
            }
            c if is_ident_start(c) => {
                i += 1;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                TokenKind::Ident(text_of(i))
            }
            other => {
                return Err(err(
                    i,
                    format!("unexpected character '{other}' (expected an operand, operator, '(' or ')')"),
                ))
            }
        };
        tokens.push(Token {
            kind,
            pos: start,
            text: text_of(i),
        });
    }
    tokens.push(Token {
        kind: TokenKind::Eof,
        pos: chars.len(),
        text: String::new(),
    });
    Ok(tokens)
}

/// `&&` or `||` at `at` (a single `&` or `|` is an error).
fn lex_logic(c: char, next: Option<char>, at: usize) -> Result<TokenKind, QueryError> {
    if next != Some(c) {
        return Err(err(at, format!("expected '{c}{c}', found a single '{c}'")));
    }
    Ok(if c == '&' { TokenKind::And } else { TokenKind::Or })
}

/// Reads the longest run of operator characters from `chars[start]` and
/// looks it up; returns the operator and the index just past it.
fn lex_op(chars: &[char], start: usize) -> Result<(Op, usize), QueryError> {
    let mut end = start;
    while end < chars.len() && is_op_char(chars[end]) {
        end += 1;
    }
    let sym: String = chars[start..end].iter().collect();
    match Op::from_symbol(&sym) {
        Some(op) => Ok((op, end)),
        None if sym == "!" => Err(err(
            start,
            "unexpected '!': there is no NOT operator (expected '!=' or '!~')",
        )),
        None => Err(err(
            start,
            format!(
                "unknown operator '{sym}' (expected one of = != > >= < <= ~ !~ \
                 or an any-of form such as ?= ?~)"
            ),
        )),
    }
}

/// Reads a number starting at `chars[start]` (a digit, or `-` before one);
/// returns its text and the index just past it.
fn lex_number(chars: &[char], start: usize) -> Result<(String, usize), QueryError> {
    let mut end = start + 1;
    while end < chars.len() && (chars[end].is_alphanumeric() || matches!(chars[end], '.' | '_')) {
        end += 1;
    }
    let text: String = chars[start..end].iter().collect();
    if !is_valid_number(&text) {
        return Err(err(
            start,
            format!(
                "invalid number '{text}' (expected digits with an optional sign and \
                 decimal part; exponents are not supported)"
            ),
        ));
    }
    Ok((text, end))
}

/// Reads a quoted string starting at the opening quote `chars[start]`.
/// Returns the content and the index just past the closing quote.
///
/// Only the quote character itself can be escaped (`\'` inside `'...'`,
/// `\"` inside `"..."`), as in PocketBase; any other backslash is kept
/// verbatim, which is what lets `\%` reach the `~` matcher as an escaped
/// wildcard.
fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), QueryError> {
    let quote = chars[start];
    let mut out = String::new();
    let mut j = start + 1;
    loop {
        match chars.get(j) {
            None => return Err(err(start, format!("unterminated string: expected a closing {quote}"))),
            Some('\\') if chars.get(j + 1) == Some(&quote) => {
                out.push(quote);
                j += 2;
            }
            Some(&c) if c == quote => return Ok((out, j + 1)),
            Some(&c) => {
                out.push(c);
                j += 1;
            }
        }
    }
}

/// `-?[0-9]+(\.[0-9]+)?`
fn is_valid_number(text: &str) -> bool {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int) && frac.is_none_or(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        tokenize(src)
            .map(|t| t.into_iter().map(|t| t.kind).collect())
            .unwrap_or_default()
    }

    #[test]
    fn lexes_operators_strings_and_comments() {
        assert_eq!(
            kinds("a?!~'x\\'y' // c\n&& b>=-1.5"),
            vec![
                TokenKind::Ident("a".into()),
                TokenKind::Op(Op::AnyNotLike),
                TokenKind::Str("x'y".into()),
                TokenKind::And,
                TokenKind::Ident("b".into()),
                TokenKind::Op(Op::Gte),
                TokenKind::Number("-1.5".into()),
                TokenKind::Eof,
            ]
        );
    }

    #[test]
    fn keeps_backslash_not_before_quote() {
        assert_eq!(
            kinds(r#""50\% \"q\"""#),
            vec![TokenKind::Str(r#"50\% "q""#.into()), TokenKind::Eof]
        );
    }

    #[test]
    fn positions_are_char_offsets() {
        let toks = tokenize("é = 'ü' && x").unwrap_or_default();
        let pos: Vec<usize> = toks.iter().map(|t| t.pos).collect();
        assert_eq!(pos, vec![0, 2, 4, 8, 11, 12]);
    }

    #[test]
    fn number_validation() {
        assert!(is_valid_number("0"));
        assert!(is_valid_number("-12.50"));
        assert!(!is_valid_number("1e6"));
        assert!(!is_valid_number("1."));
        assert!(!is_valid_number("1.2.3"));
        assert!(!is_valid_number("-"));
    }
}
