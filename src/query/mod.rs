//! Basalt's filter language: PocketBase-compatible `?filter=` / API-rule
//! expressions, `?sort=` keys, a total order on JSON values and an
//! order-preserving index key encoding.
//!
//! This module is pure (no I/O, no async): parsing turns text into an
//! [`Expr`] tree, [`evaluate`] runs it against one record through a
//! [`Resolver`], and the storage layer can translate the same tree into
//! index scans. Keeping one parser and one set of semantics for rules,
//! filters and realtime checks is the point: a record must never be visible
//! through one path and hidden through another.
//!
//! # Syntax
//!
//! `OPERAND OP OPERAND`, combined with `&&`, `||` and parentheses; `&&`
//! binds tighter (`a || b && c` is `a || (b && c)`); `//` starts a comment
//! running to the end of the line. There is no NOT (`!(...)` is a syntax
//! error). Operators: `= != > >= < <= ~ !~` and the any-of forms
//! `?= ?!= ?> ?>= ?< ?<= ?~ ?!~`.
//!
//! Operands: numbers (`12`, `-3.5`; no exponents: `1e6` is an error),
//! `'single'` or `"double"` quoted strings (only the quote character can be
//! escaped, `'it\'s'`; any other backslash is kept as typed), `true`,
//! `false`, `null`, field paths (`title`, `address.city`, `tags.0`),
//! `@request.auth|body|query|headers.*`, `@request.method`,
//! `@request.context`, `@collection.NAME[:alias].field`, date macros
//! (`@now`, `@todayStart`, ...), and one `:modifier` suffix (`:isset`,
//! `:changed`, `:length`, `:lower`, `:each`). Unknown `@` names are parse
//! errors, so a typo in a security rule cannot silently evaluate to "missing".
//!
//! Limits (all errors, never panics): 3,500 characters, 200 comparisons,
//! parentheses nested 64 deep. `""` parses to the match-everything filter.
//!
//! # Semantics (every choice, with an example)
//!
//! * **Type-aware comparison.** Numbers compare with numbers, strings with
//!   strings (bytewise; dates are `YYYY-MM-DD HH:MM:SS.mmmZ` strings, so
//!   string order is time order), bools only with `=`/`!=`. Different types
//!   are never equal: `views = '10'` is false when `views` is `10`, and
//!   `views != '10'` is true. `>`, `>=`, `<`, `<=` across types (or on
//!   bools/null) are false.
//! * **Numbers** compare by exact value across integers and floats
//!   (`1 = 1.0`, `-0 = 0`, `9007199254740993 > 9007199254740992.0`):
//!   integer literals that fit `i64`/`u64` stay integers, so an integer
//!   beyond 2^53 equals itself and not its neighbours.
//! * **Blank values.** Missing, `null` and `''` are one "blank" value for
//!   `=`/`!=`, like PocketBase: `note = null` and `note = ''` are both true
//!   when `note` is absent, null or empty; `@request.auth.id != ''` is false
//!   for a guest.
//! * **Multi-valued operands** (arrays, fanned-out paths): plain operators
//!   require *every* item to match (`tags = 'a'` means all tags are `'a'`;
//!   `tags != 'a'` means none is); `?` operators need *any* item
//!   (`tags ?= 'a'`). If both sides are multi-valued, each side is
//!   quantified the same way. An empty array behaves like a single `null`
//!   item: `tags = 'a'` is false, `tags != 'a'` true, `tags = null` true.
//! * **`:each`** forces "every item" on its side even with a `?` operator:
//!   `tags:each ?~ 'a'` means all tags contain `a`. On a single value it is
//!   a no-op.
//! * **`:length`** counts the items of an array (`tags:length > 1`); missing
//!   or null counts 0. String length is not supported (as in PocketBase):
//!   on a string or number the result is missing, so comparisons like
//!   `title:length > 1` are false and `title:length = null` is true.
//! * **`:lower`** lowercases string values (each item of an array); other
//!   values pass through: `title:lower = 'hello'`.
//! * **`:isset`** (only `@request.*`) is `true` when the key is present in
//!   the request, even if its value is null: `@request.body.title:isset = true`.
//! * **`:changed`** (only `@request.body.*`) is `true` when the body has the
//!   key and its value differs from the record's field at the same path;
//!   a single value equals a one-element array, missing equals null:
//!   `@request.body.role:changed = false`.
//! * **`~` / `!~`** are case-insensitive (per-character Unicode lowercase:
//!   `name ~ 'ÉCOLE'` matches `école`). Both sides are turned into text:
//!   strings as-is, null/missing as `''`, numbers/bools/arrays/objects as
//!   JSON text (`views ~ 1` matches `10`). A pattern without `%` is wrapped
//!   as `%pattern%` (contains); `%` matches any run of characters; `\%` is
//!   a literal percent (`title ~ '100\%'`). `_` is *not* a wildcard.
//!   On arrays, `~` needs every item to match and `?~` any.
//! * **Paths.** Dotted segments walk nested objects; numeric segments index
//!   arrays (`tags.0`); a non-numeric segment on an array of objects
//!   collects that member from each element (`authors.name` is
//!   multi-valued). A path through a scalar (`title.x`, `title.0`) is
//!   missing.
//! * **Date macros** use the resolver's clock in UTC: `@now`, `@yesterday`,
//!   `@tomorrow` (±24 h), `@todayStart`/`@todayEnd` (first/last millisecond
//!   of the day), `@monthStart`/`@monthEnd`, `@yearStart`/`@yearEnd` are
//!   date strings (`created >= @todayStart`); `@second @minute @hour @day
//!   @month @year` are numbers and `@weekday` is 0-6 with Sunday = 0.
//! * **`@collection.*`** parses, but [`JsonResolver`] resolves it to
//!   missing; cross-collection rules need a storage-backed resolver.
//! * **Sorting** ([`parse_sort`], [`compare_records`]) uses
//!   [`compare_json`]: missing/null < false < true < numbers < strings
//!   (bytewise) < arrays (lexicographic) < objects (by serialized text). A
//!   missing field sorts exactly like null; ties break on the record `id`.
//!   `@random` is rejected.
//! * **Cost.** Evaluating one comparison is O(|left items| × |right
//!   items|) item comparisons (short-circuiting), so comparing two large
//!   arrays with each other is the expensive case; `~` is linear in text
//!   plus pattern length (no backtracking).
//! * **Index keys** ([`encode_value`], [`encode_key`]) order bytewise
//!   exactly like [`compare_json`] (see `keys.rs` for the layout).

mod ast;
mod datetime;
mod eval;
mod ident;
mod keys;
mod lexer;
mod parser;
pub mod planner;
mod resolver;
mod sort;

#[cfg(test)]
mod tests_errors;
#[cfg(test)]
mod tests_eval;
#[cfg(test)]
mod tests_prop;

pub use ast::{Comparison, DateMacro, Expr, Identifier, Modifier, Op, Operand, Root};
pub use datetime::format_datetime;
pub use eval::{evaluate, Resolved, Resolver};
pub use keys::{encode_key, encode_value, legacy_key_needs_rebuild, TAG_NUMBER, TAG_STRING};
pub use lexer::MAX_FILTER_CHARS;
pub use parser::{parse_filter, MAX_COMPARISONS, MAX_DEPTH};
pub use resolver::{walk, JsonResolver};
pub(crate) use sort::EXACT_F64_LIMIT;
pub use sort::{compare_json, compare_records, parse_sort, SortKey, MAX_SORT_CHARS, MAX_SORT_KEYS};

use std::fmt;

/// A parse error with the 0-based *character* offset where it was found,
/// so clients can point at the offending spot in what they sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter at position {position}: {message}")]
pub struct QueryError {
    pub position: usize,
    pub message: String,
}

/// A parsed filter. `None` inside means "match everything" (empty filter),
/// kept distinct from any expression so callers can skip filtering work.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    expr: Option<Expr>,
}

impl Filter {
    /// The filter that matches every record.
    pub fn everything() -> Filter {
        Filter { expr: None }
    }

    /// Wraps an expression (e.g. one built programmatically).
    pub fn from_expr(expr: Expr) -> Filter {
        Filter { expr: Some(expr) }
    }

    /// True for the match-everything filter.
    pub fn is_empty(&self) -> bool {
        self.expr.is_none()
    }

    /// The expression, `None` for the match-everything filter.
    pub fn expr(&self) -> Option<&Expr> {
        self.expr.as_ref()
    }

    /// Both filters must hold; used to combine an API rule with the user's
    /// `?filter=`. The empty filter is the identity, and nested `And`s are
    /// flattened so repeated combination does not deepen the tree.
    pub fn and(self, other: Filter) -> Filter {
        let expr = match (self.expr, other.expr) {
            (None, e) | (e, None) => e,
            (Some(a), Some(b)) => {
                let mut items = Vec::new();
                for e in [a, b] {
                    match e {
                        Expr::And(children) => items.extend(children),
                        other => items.push(other),
                    }
                }
                Some(Expr::And(items))
            }
        };
        Filter { expr }
    }
}

impl fmt::Display for Filter {
    /// Valid filter text; the empty filter prints as the empty string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.expr {
            Some(e) => write!(f, "{e}"),
            None => Ok(()),
        }
    }
}
