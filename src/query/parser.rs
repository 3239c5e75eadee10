//! Recursive-descent parser for filter text.
//!
//! Grammar (`&&` binds tighter than `||`):
//!
//! ```text
//! filter  := ε | or EOF
//! or      := and ('||' and)*
//! and     := primary ('&&' primary)*
//! primary := '(' or ')' | operand OP operand
//! ```
//!
//! Recursion only happens through `(`, and the nesting depth is checked
//! *before* recursing, so hostile input such as 10,000 `(` ends in an error
//! after [`MAX_DEPTH`] levels instead of overflowing the stack (the input
//! length cap already rejects that particular input even earlier).

use crate::query::ast::{Comparison, Expr, Operand};
use crate::query::ident::parse_identifier;
use crate::query::lexer::{tokenize, Token, TokenKind};
use crate::query::{Filter, QueryError};
use serde_json::{Number, Value};

/// Deepest allowed parenthesis nesting.
pub const MAX_DEPTH: usize = 64;
/// Most comparisons a single filter may contain (PocketBase's limit).
pub const MAX_COMPARISONS: usize = 200;

/// Parses filter text. Empty (or whitespace/comment-only) input yields the
/// match-everything filter, because an absent `?filter=` and an empty one
/// mean the same thing on the wire.
pub fn parse_filter(src: &str) -> Result<Filter, QueryError> {
    let tokens = tokenize(src)?;
    let mut p = Parser {
        tokens: &tokens,
        idx: 0,
        depth: 0,
        comparisons: 0,
    };
    if p.peek().kind == TokenKind::Eof {
        return Ok(Filter::everything());
    }
    let expr = p.parse_or()?;
    let tok = p.peek();
    match tok.kind {
        TokenKind::Eof => Ok(Filter::from_expr(expr)),
        TokenKind::RParen => Err(p.error_at(tok, "unexpected ')' without a matching '('".into())),
        _ => Err(p.error_at(
            tok,
            format!("expected '&&', '||' or end of input, found {}", tok.describe()),
        )),
    }
}

struct Parser<'a> {
    tokens: &'a [Token],
    idx: usize,
    depth: usize,
    comparisons: usize,
}

impl<'a> Parser<'a> {
    /// The current token. The token list always ends with `Eof` and the
    /// parser never advances past it, so the fallback is unreachable but
    /// keeps this panic-free.
    fn peek(&self) -> &'a Token {
        let tokens: &'a [Token] = self.tokens;
        tokens.get(self.idx).or_else(|| tokens.last()).unwrap_or(&EOF_TOKEN)
    }

    fn advance(&mut self) -> &'a Token {
        let tok = self.peek();
        if tok.kind != TokenKind::Eof {
            self.idx += 1;
        }
        tok
    }

    /// The previous token's description, for "after X" in messages.
    fn after_prev(&self) -> String {
        match self.idx.checked_sub(1).and_then(|i| self.tokens.get(i)) {
            Some(t) => format!(" after {}", t.describe()),
            None => String::new(),
        }
    }

    fn error_at(&self, tok: &Token, message: String) -> QueryError {
        QueryError {
            position: tok.pos,
            message,
        }
    }

    fn parse_or(&mut self) -> Result<Expr, QueryError> {
        let mut items = Vec::new();
        push_flat(&mut items, self.parse_and()?, true);
        while self.peek().kind == TokenKind::Or {
            self.advance();
            push_flat(&mut items, self.parse_and()?, true);
        }
        Ok(collapse(items, Expr::Or))
    }

    fn parse_and(&mut self) -> Result<Expr, QueryError> {
        let mut items = Vec::new();
        push_flat(&mut items, self.parse_primary()?, false);
        while self.peek().kind == TokenKind::And {
            self.advance();
            push_flat(&mut items, self.parse_primary()?, false);
        }
        Ok(collapse(items, Expr::And))
    }

    fn parse_primary(&mut self) -> Result<Expr, QueryError> {
        let tok = self.peek();
        if tok.kind == TokenKind::LParen {
            if self.depth >= MAX_DEPTH {
                return Err(self.error_at(tok, format!("parentheses are nested deeper than {MAX_DEPTH} levels")));
            }
            self.advance();
            let inner_tok = self.peek();
            if inner_tok.kind == TokenKind::RParen {
                return Err(self.error_at(
                    inner_tok,
                    "empty parentheses: expected an expression after '(', found ')'".into(),
                ));
            }
            self.depth += 1;
            let inner = self.parse_or()?;
            self.depth -= 1;
            let close = self.peek();
            if close.kind != TokenKind::RParen {
                return Err(self.error_at(
                    close,
                    format!(
                        "expected ')' to close the '(' at position {}, found {}",
                        tok.pos,
                        close.describe()
                    ),
                ));
            }
            self.advance();
            return Ok(inner);
        }
        self.parse_comparison()
    }

    fn parse_comparison(&mut self) -> Result<Expr, QueryError> {
        let left_tok = self.peek();
        let Some(left) = operand_of(left_tok)? else {
            return Err(self.error_at(
                left_tok,
                format!(
                    "expected an expression{}, found {}",
                    self.after_prev(),
                    left_tok.describe()
                ),
            ));
        };
        self.comparisons += 1;
        if self.comparisons > MAX_COMPARISONS {
            return Err(self.error_at(
                left_tok,
                format!("too many comparisons: at most {MAX_COMPARISONS} are allowed"),
            ));
        }
        self.advance();
        let op_tok = self.peek();
        let TokenKind::Op(op) = op_tok.kind else {
            return Err(self.error_at(
                op_tok,
                format!(
                    "expected an operator after {}, found {}",
                    left_tok.describe(),
                    op_tok.describe()
                ),
            ));
        };
        self.advance();
        let right_tok = self.peek();
        let Some(right) = operand_of(right_tok)? else {
            return Err(self.error_at(
                right_tok,
                format!(
                    "expected an operand after '{}', found {}",
                    op.as_str(),
                    right_tok.describe()
                ),
            ));
        };
        self.advance();
        Ok(Expr::Cmp(Comparison { left, op, right }))
    }
}

/// Sentinel used only if the token list were somehow empty.
static EOF_TOKEN: Token = Token {
    kind: TokenKind::Eof,
    pos: 0,
    text: String::new(),
};

/// Appends `e`, splicing in the children of a same-kind node so that
/// `a && (b && c)` becomes one flat `And`.
fn push_flat(items: &mut Vec<Expr>, e: Expr, is_or: bool) {
    match e {
        Expr::Or(children) if is_or => items.extend(children),
        Expr::And(children) if !is_or => items.extend(children),
        other => items.push(other),
    }
}

/// A one-element list is just its element.
fn collapse(mut items: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Expr {
    if items.len() == 1 {
        if let Some(only) = items.pop() {
            return only;
        }
    }
    make(items)
}

/// The operand a token denotes, `None` if it is not an operand at all.
fn operand_of(tok: &Token) -> Result<Option<Operand>, QueryError> {
    Ok(Some(match &tok.kind {
        TokenKind::Number(text) => Operand::Literal(Value::Number(parse_number(text, tok.pos)?)),
        TokenKind::Str(s) => Operand::Literal(Value::String(s.clone())),
        TokenKind::Ident(t) => match t.as_str() {
            "true" => Operand::Literal(Value::Bool(true)),
            "false" => Operand::Literal(Value::Bool(false)),
            "null" => Operand::Literal(Value::Null),
            _ => Operand::Ident(parse_identifier(t, tok.pos)?),
        },
        _ => return Ok(None),
    }))
}

/// Integers stay exact when they fit `i64`/`u64`; everything else becomes a
/// finite `f64` (a 400-digit literal overflows to infinity and is rejected,
/// since JSON numbers cannot be infinite).
pub(crate) fn parse_number(text: &str, pos: usize) -> Result<Number, QueryError> {
    if !text.contains('.') {
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Number::from(i));
        }
        if let Ok(u) = text.parse::<u64>() {
            return Ok(Number::from(u));
        }
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .ok_or_else(|| QueryError {
            position: pos,
            message: format!("number '{}' is out of range", quote_inner(text)),
        })
}

fn quote_inner(text: &str) -> String {
    text.chars().take(40).collect()
}
