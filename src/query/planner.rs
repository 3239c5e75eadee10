//! Choosing how to answer a list query: which index (if any) narrows the
//! candidates, whether its order already satisfies the sort, and whether it
//! answers the filter exactly (so counts can be taken from index keys alone).
//!
//! Pure: it sees indexes as field lists and asks the caller two questions
//! through closures — "is this path scalar-only?" (schema knowledge) and
//! "what constant does this identifier have in this request?"
//! (`@request.auth.id`, `@now`) — so rules such as `owner = @request.auth.id`
//! can use an index too.
//!
//! What it can use, per index `[f1, f2, …]`:
//! - a prefix of equality conditions `fi = literal` (top-level `&&` terms),
//! - then one range (`>`, `>=`, `<`, `<=`) on the next field if that field is
//!   ascending in the index,
//! - and the index order for the sort, when the sort keys not fixed by
//!   equality are exactly the remaining index fields (all in index
//!   direction, or all reversed): an index with extra trailing fields would
//!   order ties by those fields instead of by id, as the sort contract says.
//!
//! Only paths whose values can never be arrays (the schema says so) are
//! used, because `tags = 'a'` on an array means "every item" and the index
//! holds the array as one value. The literal must be a number, a non-empty
//! string or (for `=`) a boolean: blank literals (`''`, `null`) also match
//! missing fields, which a key range cannot express. Candidates are always
//! re-checked with the full filter, so the index only ever narrows.

use std::fmt;

use serde_json::Value;

use crate::query::{Expr, Filter, Identifier, Op, Operand, Root, SortKey};

/// An index as the planner sees it.
#[derive(Debug, Clone)]
pub struct IndexInfo {
    pub name: String,
    /// `(path, descending)` per field.
    pub fields: Vec<(Vec<String>, bool)>,
}

/// Which kind of value a range covers (type-aware comparisons never cross kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Number,
    String,
}

/// A range on one index field: bounds are `(value, inclusive)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub kind: Kind,
    pub lower: Option<(Value, bool)>,
    pub upper: Option<(Value, bool)>,
}

/// The chosen access path.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Index position in the list given to [`plan`]; `None` = full scan.
    pub index: Option<usize>,
    /// Equality values for the index's leading fields.
    pub eq: Vec<Value>,
    /// A range on the field after the equality prefix.
    pub range: Option<Range>,
    /// Walk the index backwards.
    pub reverse: bool,
    /// The walk order already satisfies the requested sort (stream, stop early).
    pub sorted: bool,
    /// The index range holds exactly the matching records: every filter term
    /// was consumed, so counting keys counts matches.
    pub exact: bool,
    /// Human-readable description (`?explain=1`).
    pub explain: String,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explain)
    }
}

/// One usable `path OP constant` term.
struct Term<'a> {
    path: &'a [String],
    op: Op,
    value: Value,
}

fn flip(op: Op) -> Op {
    match op {
        Op::Gt => Op::Lt,
        Op::Gte => Op::Lte,
        Op::Lt => Op::Gt,
        Op::Lte => Op::Gte,
        other => other,
    }
}

fn usable_literal(v: &Value, op: Op) -> bool {
    match v {
        Value::Number(_) => true,
        Value::String(s) => !s.is_empty(),
        Value::Bool(_) => op == Op::Eq,
        _ => false,
    }
}

/// Top-level `&&` terms (a single comparison counts as one term).
fn conjuncts(filter: &Filter) -> Vec<&Expr> {
    match filter.expr() {
        None => Vec::new(),
        Some(Expr::And(items)) => items.iter().collect(),
        Some(e) => vec![e],
    }
}

fn term<'a>(
    e: &'a Expr,
    scalar: &dyn Fn(&[String]) -> bool,
    constant: &dyn Fn(&Identifier) -> Option<Value>,
) -> Option<Term<'a>> {
    let Expr::Cmp(c) = e else { return None };
    if !matches!(c.op, Op::Eq | Op::Gt | Op::Gte | Op::Lt | Op::Lte) {
        return None;
    }
    let value_of = |o: &Operand| match o {
        Operand::Literal(v) => Some(v.clone()),
        Operand::Ident(id) if id.root != Root::Record => constant(id),
        Operand::Ident(_) => None,
    };
    let field = |o: &'a Operand| match o {
        Operand::Ident(id) if id.root == Root::Record && id.modifier.is_none() && scalar(&id.path) => {
            Some(&id.path[..])
        }
        _ => None,
    };
    let (path, op, value) = if let (Some(p), Some(v)) = (field(&c.left), value_of(&c.right)) {
        (p, c.op, v)
    } else if let (Some(p), Some(v)) = (field(&c.right), value_of(&c.left)) {
        (p, flip(c.op), v)
    } else {
        return None;
    };
    usable_literal(&value, op).then_some(Term { path, op, value })
}

fn kind(v: &Value) -> Option<Kind> {
    match v {
        Value::Number(_) => Some(Kind::Number),
        Value::String(_) => Some(Kind::String),
        _ => None,
    }
}

/// Tightens `range` with one term; returns false if the term does not fit
/// (another kind).
fn add_bound(range: &mut Option<Range>, t: &Term) -> bool {
    let Some(k) = kind(&t.value) else { return false };
    let r = range.get_or_insert(Range {
        kind: k,
        lower: None,
        upper: None,
    });
    if r.kind != k {
        return false;
    }
    let tighter = |old: &Option<(Value, bool)>, new: &(Value, bool), want_greater: bool| match old {
        None => true,
        Some((ov, oinc)) => match crate::query::compare_json(&new.0, ov) {
            std::cmp::Ordering::Equal => *oinc && !new.1,
            std::cmp::Ordering::Greater => want_greater,
            std::cmp::Ordering::Less => !want_greater,
        },
    };
    let b = (t.value.clone(), matches!(t.op, Op::Gte | Op::Lte));
    match t.op {
        Op::Gt | Op::Gte => {
            if tighter(&r.lower, &b, true) {
                r.lower = Some(b);
            }
        }
        _ => {
            if tighter(&r.upper, &b, false) {
                r.upper = Some(b);
            }
        }
    }
    true
}

struct Candidate {
    index: usize,
    eq: Vec<Value>,
    range: Option<Range>,
    used: Vec<usize>,
    reverse: bool,
    sorted: bool,
}

/// Plans a list query. `filter` should already include the rule (`rule && filter`):
/// the usable terms are picked out, every index is scored as a candidate,
/// and the best one (or a full scan) becomes the plan.
pub fn plan(
    filter: &Filter,
    sort: &[SortKey],
    indexes: &[IndexInfo],
    scalar: &dyn Fn(&[String]) -> bool,
    constant: &dyn Fn(&Identifier) -> Option<Value>,
) -> Plan {
    let exprs = conjuncts(filter);
    let terms: Vec<(usize, Term)> = exprs
        .iter()
        .enumerate()
        .filter_map(|(i, e)| term(e, scalar, constant).map(|t| (i, t)))
        .collect();
    let mut best: Option<(u32, Candidate)> = None;
    for (ix, index) in indexes.iter().enumerate() {
        let Some((score, c)) = candidate(ix, index, &terms, sort) else {
            continue;
        };
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, c));
        }
    }
    let Some((_, c)) = best else {
        return full_scan(filter, sort);
    };
    let mut used = c.used.clone();
    used.sort_unstable();
    used.dedup();
    let exact = used.len() == exprs.len();
    let explain = explain(&indexes[c.index], &c, exact);
    Plan {
        index: Some(c.index),
        eq: c.eq,
        range: c.range,
        reverse: c.reverse,
        sorted: c.sorted,
        exact,
        explain,
    }
}

/// What index `ix` can do for `terms` and `sort`, with its score; `None`
/// when it neither narrows nor orders.
fn candidate(ix: usize, index: &IndexInfo, terms: &[(usize, Term)], sort: &[SortKey]) -> Option<(u32, Candidate)> {
    let mut eq = Vec::new();
    let mut used = Vec::new();
    for (path, _) in &index.fields {
        match terms.iter().find(|(_, t)| t.op == Op::Eq && t.path == &path[..]) {
            Some((i, t)) => {
                eq.push(t.value.clone());
                used.push(*i);
                // Any other equality on the same path is also enforced only
                // if identical; leave duplicates to the re-check.
            }
            None => break,
        }
    }
    let mut range = None;
    if let Some((path, false)) = index.fields.get(eq.len()) {
        for (i, t) in terms.iter().filter(|(_, t)| t.op != Op::Eq && t.path == &path[..]) {
            if add_bound(&mut range, t) {
                used.push(*i);
            }
        }
    }
    let (sorted, reverse) = walk_order(index, eq.len(), sort);
    let narrow = eq.len() as u32 * 4 + u32::from(range.is_some()) * 2;
    let score = narrow * 2 + u32::from(sorted && !sort.is_empty());
    if narrow == 0 && (!sorted || sort.is_empty()) {
        return None;
    }
    Some((
        score,
        Candidate {
            index: ix,
            eq,
            range,
            used,
            reverse,
            sorted,
        },
    ))
}

/// Whether walking `index` (its first `fixed` fields pinned by equality)
/// yields `sort`'s order, and whether backwards: `(sorted, reverse)`.
fn walk_order(index: &IndexInfo, fixed: usize, sort: &[SortKey]) -> (bool, bool) {
    // Sort keys fixed by equality don't constrain the order.
    let pinned = &index.fields[..fixed];
    let wanted: Vec<&SortKey> = sort
        .iter()
        .filter(|k| !pinned.iter().any(|(p, _)| *p == k.path))
        .collect();
    let rest = &index.fields[fixed..];
    if wanted.is_empty() {
        return (true, false);
    }
    if wanted.len() != rest.len() || !wanted.iter().zip(rest).all(|(k, (p, _))| k.path == *p) {
        return (false, false);
    }
    if wanted.iter().zip(rest).all(|(k, (_, d))| k.desc == *d) {
        (true, false)
    } else if wanted.iter().zip(rest).all(|(k, (_, d))| k.desc != *d) {
        (true, true)
    } else {
        (false, false)
    }
}

/// No index helps: every record is read.
fn full_scan(filter: &Filter, sort: &[SortKey]) -> Plan {
    let explain = format!(
        "full scan{}{}",
        if filter.is_empty() {
            ""
        } else {
            ", filter checked on every record"
        },
        if sort.is_empty() { "" } else { ", sorted in memory" }
    );
    Plan {
        index: None,
        eq: Vec::new(),
        range: None,
        reverse: false,
        sorted: sort.is_empty(),
        exact: filter.is_empty(),
        explain,
    }
}

/// The `?explain=1` text of an index plan.
fn explain(index: &IndexInfo, c: &Candidate, exact: bool) -> String {
    let mut explain = format!("index {}", index.name);
    if !c.eq.is_empty() {
        let eqs: Vec<String> = index
            .fields
            .iter()
            .zip(&c.eq)
            .map(|((p, _), v)| format!("{} = {v}", p.join(".")))
            .collect();
        explain.push_str(&format!(" (equality on {})", eqs.join(", ")));
    }
    if let Some(r) = &c.range {
        let field = index.fields[c.eq.len()].0.join(".");
        let lo = r
            .lower
            .as_ref()
            .map(|(v, inc)| format!("{field} {} {v}", if *inc { ">=" } else { ">" }));
        let hi = r
            .upper
            .as_ref()
            .map(|(v, inc)| format!("{field} {} {v}", if *inc { "<=" } else { "<" }));
        let parts: Vec<String> = lo.into_iter().chain(hi).collect();
        explain.push_str(&format!(" (range {})", parts.join(" and ")));
    }
    if c.reverse {
        explain.push_str(", walked backwards");
    }
    explain.push_str(if c.sorted {
        ", index order serves the sort"
    } else {
        ", sorted in memory"
    });
    explain.push_str(if exact {
        ", exact (counts from index keys)"
    } else {
        ", remaining filter checked per record"
    });
    explain
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{parse_filter, parse_sort};
    use serde_json::json;

    fn idx(name: &str, fields: &[&str]) -> IndexInfo {
        IndexInfo {
            name: name.into(),
            fields: fields
                .iter()
                .map(|f| match f.strip_prefix('-') {
                    Some(p) => (p.split('.').map(String::from).collect(), true),
                    None => (f.split('.').map(String::from).collect(), false),
                })
                .collect(),
        }
    }

    fn run(filter: &str, sort: &str, indexes: &[IndexInfo]) -> Plan {
        let f = parse_filter(filter).unwrap();
        let s = parse_sort(sort).unwrap();
        plan(&f, &s, indexes, &|p| p[0] != "tags", &|id| match id.root {
            Root::RequestAuth => Some(json!("u1")),
            _ => None,
        })
    }

    #[test]
    fn picks_equality_prefix_and_sort() {
        let ix = vec![
            idx("_sys_created", &["created"]),
            idx("by_views", &["views", "-created"]),
        ];
        let p = run("views = 42", "-created", &ix);
        assert_eq!(p.index, Some(1));
        assert_eq!(p.eq, vec![json!(42)]);
        assert!(p.sorted && !p.reverse && p.exact, "{p:?}");
        let p = run("views = 42", "created", &ix);
        assert!(p.sorted && p.reverse);
        let p = run("views = 42 && title = 'x'", "", &ix);
        assert_eq!(p.index, Some(1));
        assert!(!p.exact);
        let p = run("", "-created", &ix);
        assert_eq!(p.index, Some(0));
        assert!(p.reverse && p.exact);
        let p = run("", "title", &ix);
        assert_eq!(p.index, None);
        assert!(!p.sorted);
    }

    #[test]
    fn ranges_and_constants() {
        let ix = vec![idx("by_views", &["views"]), idx("by_owner", &["owner"])];
        let p = run("views > 10 && views <= 20 && views > 12", "", &ix);
        assert_eq!(p.index, Some(0));
        let r = p.range.unwrap();
        assert_eq!(r.lower, Some((json!(12), false)));
        assert_eq!(r.upper, Some((json!(20), true)));
        let p = run("owner = @request.auth.id", "", &ix);
        assert_eq!(p.index, Some(1));
        assert_eq!(p.eq, vec![json!("u1")]);
        // Blank literals, OR, array fields and modifiers are not used.
        assert_eq!(run("views = ''", "", &ix).index, None);
        assert_eq!(run("views = 1 || views = 2", "", &ix).index, None);
        assert_eq!(run("owner:lower = 'a'", "", &ix).index, None);
        let tags = vec![idx("by_tags", &["tags"])];
        assert_eq!(run("tags = 'a'", "", &tags).index, None);
        // Mixed kinds: the number bound is used, the string one re-checked.
        let p = run("views > 1 && views < 'z'", "", &ix);
        assert!(!p.exact);
    }
}
