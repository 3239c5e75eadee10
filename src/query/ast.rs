//! The syntax tree of a parsed filter, plus a `Display` that prints it back
//! as valid filter text.
//!
//! The printer exists so that a parsed (or programmatically combined) filter
//! can be shown to operators in EXPLAIN-style output and logs, and so the
//! property tests can check `parse(print(ast))` against the original tree.

use serde_json::Value;
use std::fmt;

/// A boolean combination of comparisons.
///
/// `And`/`Or` hold flat lists (the parser merges `a && (b && c)` into one
/// list) because evaluation and SQL generation both want n-ary nodes. An
/// empty `And` is true and an empty `Or` is false, the usual identities.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Cmp(Comparison),
}

/// `left op right`, the only leaf of the language.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub left: Operand,
    pub op: Op,
    pub right: Operand,
}

/// Comparison operators. The `Any*` forms are the `?`-prefixed "at least one
/// item" variants; the plain forms require every item of a multi-valued
/// operand to match (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    NotLike,
    AnyEq,
    AnyNeq,
    AnyGt,
    AnyGte,
    AnyLt,
    AnyLte,
    AnyLike,
    AnyNotLike,
}

impl Op {
    /// Every operator, for table lookups and test generators.
    pub const ALL: [Op; 16] = [
        Op::Eq,
        Op::Neq,
        Op::Gt,
        Op::Gte,
        Op::Lt,
        Op::Lte,
        Op::Like,
        Op::NotLike,
        Op::AnyEq,
        Op::AnyNeq,
        Op::AnyGt,
        Op::AnyGte,
        Op::AnyLt,
        Op::AnyLte,
        Op::AnyLike,
        Op::AnyNotLike,
    ];

    /// The operator's spelling in filter text.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Neq => "!=",
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::Lt => "<",
            Op::Lte => "<=",
            Op::Like => "~",
            Op::NotLike => "!~",
            Op::AnyEq => "?=",
            Op::AnyNeq => "?!=",
            Op::AnyGt => "?>",
            Op::AnyGte => "?>=",
            Op::AnyLt => "?<",
            Op::AnyLte => "?<=",
            Op::AnyLike => "?~",
            Op::AnyNotLike => "?!~",
        }
    }

    /// Looks an operator up by its exact spelling.
    pub fn from_symbol(s: &str) -> Option<Op> {
        Op::ALL.iter().copied().find(|op| op.as_str() == s)
    }

    /// True for the `?`-prefixed "any item" forms.
    pub fn is_any(self) -> bool {
        self.as_str().starts_with('?')
    }

    /// The operator without its any-of quantifier (`?>=` becomes `>=`), so
    /// the scalar comparison logic is written once.
    pub fn base(self) -> Op {
        match self {
            Op::AnyEq => Op::Eq,
            Op::AnyNeq => Op::Neq,
            Op::AnyGt => Op::Gt,
            Op::AnyGte => Op::Gte,
            Op::AnyLt => Op::Lt,
            Op::AnyLte => Op::Lte,
            Op::AnyLike => Op::Like,
            Op::AnyNotLike => Op::NotLike,
            other => other,
        }
    }
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A number, string, `true`, `false` or `null` written in the filter.
    Literal(Value),
    /// A field path, `@request.*` value, `@collection.*` field or date macro.
    Ident(Identifier),
}

/// A resolved reference: which namespace (`root`), the dotted path inside
/// it, and an optional `:modifier`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier {
    pub root: Root,
    pub path: Vec<String>,
    pub modifier: Option<Modifier>,
}

impl Identifier {
    /// A plain record field path without modifier (handy for resolvers that
    /// need to look up "the same field on the record", e.g. for `:changed`).
    pub fn record(path: Vec<String>) -> Identifier {
        Identifier {
            root: Root::Record,
            path,
            modifier: None,
        }
    }

    /// The same reference with the modifier removed; resolvers are always
    /// asked about the bare reference because modifiers are applied by the
    /// evaluator.
    pub fn without_modifier(&self) -> Identifier {
        Identifier {
            root: self.root.clone(),
            path: self.path.clone(),
            modifier: None,
        }
    }
}

/// The namespace an identifier starts in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Root {
    /// A field of the record being filtered (`title`, `author.name`).
    Record,
    RequestAuth,
    RequestBody,
    RequestQuery,
    RequestHeaders,
    RequestMethod,
    RequestContext,
    /// `@collection.NAME[:alias].field`: a field of another collection.
    Collection {
        name: String,
        alias: Option<String>,
    },
    /// `@now`, `@todayStart`, ...: computed from the resolver's clock.
    Macro(DateMacro),
}

impl Root {
    /// True for every `@request.*` namespace (where `:isset` is allowed).
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            Root::RequestAuth
                | Root::RequestBody
                | Root::RequestQuery
                | Root::RequestHeaders
                | Root::RequestMethod
                | Root::RequestContext
        )
    }
}

/// Identifier suffixes that transform the resolved value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modifier {
    IsSet,
    Changed,
    Length,
    Lower,
    Each,
}

impl Modifier {
    /// The spelling after the `:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Modifier::IsSet => "isset",
            Modifier::Changed => "changed",
            Modifier::Length => "length",
            Modifier::Lower => "lower",
            Modifier::Each => "each",
        }
    }

    /// Looks a modifier up by the text after the `:`.
    pub fn from_name(s: &str) -> Option<Modifier> {
        [
            Modifier::IsSet,
            Modifier::Changed,
            Modifier::Length,
            Modifier::Lower,
            Modifier::Each,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// Date/time macros; all are evaluated in UTC against `Resolver::now_millis`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DateMacro {
    Now,
    Yesterday,
    Tomorrow,
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Weekday,
    Year,
    TodayStart,
    TodayEnd,
    MonthStart,
    MonthEnd,
    YearStart,
    YearEnd,
}

impl DateMacro {
    /// Every macro, for lookups and tests.
    pub const ALL: [DateMacro; 16] = [
        DateMacro::Now,
        DateMacro::Yesterday,
        DateMacro::Tomorrow,
        DateMacro::Second,
        DateMacro::Minute,
        DateMacro::Hour,
        DateMacro::Day,
        DateMacro::Month,
        DateMacro::Weekday,
        DateMacro::Year,
        DateMacro::TodayStart,
        DateMacro::TodayEnd,
        DateMacro::MonthStart,
        DateMacro::MonthEnd,
        DateMacro::YearStart,
        DateMacro::YearEnd,
    ];

    /// The macro's spelling including the leading `@`.
    pub fn name(self) -> &'static str {
        match self {
            DateMacro::Now => "@now",
            DateMacro::Yesterday => "@yesterday",
            DateMacro::Tomorrow => "@tomorrow",
            DateMacro::Second => "@second",
            DateMacro::Minute => "@minute",
            DateMacro::Hour => "@hour",
            DateMacro::Day => "@day",
            DateMacro::Month => "@month",
            DateMacro::Weekday => "@weekday",
            DateMacro::Year => "@year",
            DateMacro::TodayStart => "@todayStart",
            DateMacro::TodayEnd => "@todayEnd",
            DateMacro::MonthStart => "@monthStart",
            DateMacro::MonthEnd => "@monthEnd",
            DateMacro::YearStart => "@yearStart",
            DateMacro::YearEnd => "@yearEnd",
        }
    }

    /// Looks a macro up by its full spelling (`@now`).
    pub fn from_name(s: &str) -> Option<DateMacro> {
        DateMacro::ALL.iter().copied().find(|m| m.name() == s)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Expr {
    /// Prints valid filter syntax. `&&` binds tighter than `||`, so only `Or`
    /// nodes inside an `And` need parentheses. Empty `And`/`Or` have no
    /// syntax of their own and print as the constant comparisons `1 = 1`
    /// (true) and `1 = 0` (false).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Cmp(c) => write!(f, "{c}"),
            Expr::And(items) if items.is_empty() => f.write_str("1 = 1"),
            Expr::Or(items) if items.is_empty() => f.write_str("1 = 0"),
            Expr::And(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" && ")?;
                    }
                    match item {
                        Expr::Or(_) => write!(f, "({item})")?,
                        _ => write!(f, "{item}")?,
                    }
                }
                Ok(())
            }
            Expr::Or(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" || ")?;
                    }
                    write!(f, "{item}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.left, self.op, self.right)
    }
}

impl fmt::Display for Operand {
    /// Literals print in a form the lexer reads back to an equal value.
    /// Numbers never use exponent notation (the language has none). Arrays and objects cannot be written as
    /// literals, so they print as a quoted string of their JSON text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Ident(id) => write!(f, "{id}"),
            Operand::Literal(Value::Null) => f.write_str("null"),
            Operand::Literal(Value::Bool(b)) => write!(f, "{b}"),
            Operand::Literal(Value::Number(n)) => {
                if let Some(i) = n.as_i64() {
                    write!(f, "{i}")
                } else if let Some(u) = n.as_u64() {
                    write!(f, "{u}")
                } else {
                    // serde_json's text keeps `2.0` and `-0.0` distinct from
                    // `2` and `0` (which `~` can observe), but may use an
                    // exponent; fall back to Rust's exponent-free form then,
                    // kept a float with `.0` (`1e19` read back as an integer
                    // would be another number to `~`).
                    let text = n.to_string();
                    if text.contains(['e', 'E']) {
                        let plain = n.as_f64().unwrap_or(0.0).to_string();
                        f.write_str(&plain)?;
                        if plain.contains('.') {
                            Ok(())
                        } else {
                            f.write_str(".0")
                        }
                    } else {
                        f.write_str(&text)
                    }
                }
            }
            Operand::Literal(Value::String(s)) => write_quoted(f, s),
            Operand::Literal(other) => write_quoted(f, &other.to_string()),
        }
    }
}

/// Single-quotes `s`, escaping `'` as `\'`. Other backslashes are written
/// verbatim because the lexer keeps a backslash that does not precede the
/// quote character. (A string ending in a backslash therefore has no exact
/// filter spelling, exactly as in PocketBase.)
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("'")?;
    for c in s.chars() {
        if c == '\'' {
            f.write_str("\\'")?;
        } else {
            write!(f, "{c}")?;
        }
    }
    f.write_str("'")
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix: String = match &self.root {
            Root::Record => String::new(),
            Root::RequestAuth => "@request.auth".into(),
            Root::RequestBody => "@request.body".into(),
            Root::RequestQuery => "@request.query".into(),
            Root::RequestHeaders => "@request.headers".into(),
            Root::RequestMethod => "@request.method".into(),
            Root::RequestContext => "@request.context".into(),
            Root::Collection { name, alias } => match alias {
                Some(a) => format!("@collection.{name}:{a}"),
                None => format!("@collection.{name}"),
            },
            Root::Macro(m) => m.name().into(),
        };
        f.write_str(&prefix)?;
        for (i, seg) in self.path.iter().enumerate() {
            if i > 0 || !prefix.is_empty() {
                f.write_str(".")?;
            }
            f.write_str(seg)?;
        }
        if let Some(m) = self.modifier {
            write!(f, ":{}", m.as_str())?;
        }
        Ok(())
    }
}
