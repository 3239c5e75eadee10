//! Turning identifier text (`@request.body.tags:length`) into an
//! [`Identifier`], and validating plain field paths (shared with `sort`).
//!
//! Validation happens here, at parse time, so that a typo such as
//! `@request.auht.id` is rejected with a message instead of silently
//! resolving to "missing" and making a security rule quietly fail (or pass).

use crate::query::ast::{DateMacro, Identifier, Modifier, Root};
use crate::query::QueryError;

fn err(position: usize, message: impl Into<String>) -> QueryError {
    QueryError {
        position,
        message: message.into(),
    }
}

/// Parses identifier text found at char offset `pos`.
pub(crate) fn parse_identifier(text: &str, pos: usize) -> Result<Identifier, QueryError> {
    let (base, modifier) = split_modifier(text, pos)?;
    let identifier = if base.starts_with('@') {
        parse_at_identifier(text, base, pos)?
    } else if base.starts_with('#') {
        return Err(err(pos, format!("unknown identifier '{text}'")));
    } else {
        Identifier::record(parse_path(base, pos)?)
    };
    let identifier = Identifier { modifier, ..identifier };
    check_modifier_allowed(&identifier, text, pos)?;
    Ok(identifier)
}

/// Splits a trailing `:modifier` off. A colon whose suffix is not a known
/// modifier is an error, except inside `@collection.NAME:alias...`, where
/// the colon introduces the alias.
fn split_modifier(text: &str, pos: usize) -> Result<(&str, Option<Modifier>), QueryError> {
    let Some(idx) = text.rfind(':') else {
        return Ok((text, None));
    };
    let suffix = &text[idx + 1..];
    if let Some(m) = Modifier::from_name(suffix) {
        return Ok((&text[..idx], Some(m)));
    }
    if text.starts_with("@collection.") {
        return Ok((text, None));
    }
    Err(err(
        pos + text[..idx].chars().count(),
        format!(
            "unknown modifier ':{suffix}' in '{text}' (expected :isset, :changed, :length, \
             :lower or :each)"
        ),
    ))
}

/// Handles every identifier starting with `@`: request values, other
/// collections and date macros. It only splits the text and dispatches;
/// each root family has its own step below so its rules (and the error
/// positions they report) read in one place.
fn parse_at_identifier(full: &str, base: &str, pos: usize) -> Result<Identifier, QueryError> {
    if let Some(m) = DateMacro::from_name(base) {
        return Ok(Identifier {
            root: Root::Macro(m),
            path: Vec::new(),
            modifier: None,
        });
    }
    let mut parts = base.splitn(3, '.');
    let head = parts.next().unwrap_or_default();
    let second = parts.next();
    let rest = parts.next();
    let at = AtParts {
        full,
        base,
        pos,
        head,
        rest,
    };
    match (head, second) {
        ("@request", Some(sec @ ("method" | "context"))) => at.request_scalar(sec),
        ("@request", Some(sec @ ("auth" | "body" | "query" | "headers"))) => at.request_map(sec),
        ("@collection", Some(coll)) => at.collection(coll),
        _ => Err(err(pos, format!("unknown identifier '{full}'"))),
    }
}

/// An `@` identifier split at its first two dots (`head.second.rest`),
/// with the text and offset needed to place errors precisely. Borrowed
/// slices only, so the split costs no allocation.
struct AtParts<'a> {
    /// The whole identifier text, modifier included, for messages.
    full: &'a str,
    /// The identifier without its modifier.
    base: &'a str,
    /// Char offset of the identifier in the expression.
    pos: usize,
    /// `@request` or `@collection`.
    head: &'a str,
    /// Everything after the second dot, if any.
    rest: Option<&'a str>,
}

impl AtParts<'_> {
    /// Char offset of `rest` inside the expression, given the second part.
    fn rest_pos(&self, second: &str) -> usize {
        self.pos + self.head.chars().count() + second.chars().count() + 2
    }

    /// `@request.method` and `@request.context` are single values: a path
    /// after them is a typo, reported at the dot rather than resolved to
    /// "missing".
    fn request_scalar(&self, sec: &str) -> Result<Identifier, QueryError> {
        if self.rest.is_some() {
            return Err(err(
                self.rest_pos(sec) - 1,
                format!("'@request.{sec}' has no sub-fields (in '{}')", self.full),
            ));
        }
        let root = if sec == "method" {
            Root::RequestMethod
        } else {
            Root::RequestContext
        };
        Ok(Identifier {
            root,
            path: Vec::new(),
            modifier: None,
        })
    }

    /// `@request.auth|body|query|headers` are maps: they need a field path,
    /// validated like any record path.
    fn request_map(&self, sec: &str) -> Result<Identifier, QueryError> {
        let root = match sec {
            "auth" => Root::RequestAuth,
            "body" => Root::RequestBody,
            "query" => Root::RequestQuery,
            _ => Root::RequestHeaders,
        };
        let Some(rest) = self.rest else {
            return Err(err(
                self.pos + self.base.chars().count(),
                format!("expected a field name after '@request.{sec}.' in '{}'", self.full),
            ));
        };
        Ok(Identifier {
            root,
            path: parse_path(rest, self.rest_pos(sec))?,
            modifier: None,
        })
    }

    /// `@collection.NAME[:alias].path`: the name and alias are checked as
    /// path segments here so a bad one is reported where it is written, and
    /// a field path is required.
    fn collection(&self, coll: &str) -> Result<Identifier, QueryError> {
        let (name, alias) = match coll.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (coll, None),
        };
        let name_pos = self.pos + self.head.chars().count() + 1;
        check_segment(name, name_pos)?;
        if let Some(a) = alias {
            check_segment(a, name_pos + name.chars().count() + 1)?;
        }
        let Some(rest) = self.rest else {
            return Err(err(
                self.pos + self.base.chars().count(),
                format!("expected a field name after '@collection.{coll}.' in '{}'", self.full),
            ));
        };
        Ok(Identifier {
            root: Root::Collection {
                name: name.to_string(),
                alias: alias.map(str::to_string),
            },
            path: parse_path(rest, self.rest_pos(coll))?,
            modifier: None,
        })
    }
}

/// `:isset` only makes sense for request data (it asks whether the client
/// sent the key) and `:changed` only for the request body (it compares the
/// submitted value with the stored record).
fn check_modifier_allowed(id: &Identifier, text: &str, pos: usize) -> Result<(), QueryError> {
    let modifier_pos = || pos + text.rfind(':').map_or(0, |i| text[..i].chars().count());
    match id.modifier {
        Some(Modifier::IsSet) if !id.root.is_request() => Err(err(
            modifier_pos(),
            format!("':isset' is only allowed on @request.* identifiers, not on '{text}'"),
        )),
        Some(Modifier::Changed) if id.root != Root::RequestBody => Err(err(
            modifier_pos(),
            format!("':changed' is only allowed on @request.body.* identifiers, not on '{text}'"),
        )),
        _ => Ok(()),
    }
}

/// Splits a dotted path, checking every segment; `pos` is the char offset of
/// the path's first character.
pub(crate) fn parse_path(path: &str, pos: usize) -> Result<Vec<String>, QueryError> {
    let mut out = Vec::new();
    let mut seg_pos = pos;
    for seg in path.split('.') {
        check_segment(seg, seg_pos)?;
        out.push(seg.to_string());
        seg_pos += seg.chars().count() + 1;
    }
    Ok(out)
}

/// A path segment is non-empty and made of letters, digits and `_`.
fn check_segment(seg: &str, pos: usize) -> Result<(), QueryError> {
    if seg.is_empty() {
        return Err(err(pos, "empty field name (expected a name between the dots)"));
    }
    match seg
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
    {
        Some((i, c)) => Err(err(
            pos + i,
            format!("unexpected '{c}' in field name '{seg}' (expected letters, digits or '_')"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Identifier {
        match parse_identifier(text, 0) {
            Ok(id) => id,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn parses_roots_and_modifiers() {
        let id = ok("@request.body.tags:length");
        assert_eq!(id.root, Root::RequestBody);
        assert_eq!(id.path, vec!["tags"]);
        assert_eq!(id.modifier, Some(Modifier::Length));
        let id = ok("@collection.users:u.profile.name:lower");
        assert_eq!(
            id.root,
            Root::Collection {
                name: "users".into(),
                alias: Some("u".into())
            }
        );
        assert_eq!(id.path, vec!["profile", "name"]);
        assert_eq!(id.modifier, Some(Modifier::Lower));
        assert_eq!(ok("@todayStart").root, Root::Macro(DateMacro::TodayStart));
        assert_eq!(ok("tags.0").path, vec!["tags", "0"]);
        assert_eq!(ok("@request.method").root, Root::RequestMethod);
    }

    #[test]
    fn display_round_trips() {
        for t in [
            "a.b.c:each",
            "@request.auth.id:isset",
            "@request.body.x:changed",
            "@collection.posts:p.title",
            "@collection.posts.title",
            "@monthEnd",
            "@request.context",
        ] {
            assert_eq!(ok(t).to_string(), t);
        }
    }

    #[test]
    fn rejects_bad_identifiers() {
        for (t, p) in [
            ("@request.auht.id", 0),
            ("@foo", 0),
            ("@request.auth", 13),
            ("a..b", 2),
            ("a.", 2),
            ("title:isset", 5),
            ("@request.query.x:changed", 16),
            ("x:upper", 1),
            ("a:lower:each", 1),
            ("#x", 0),
            ("@request.method.x", 15),
            ("@collection.c", 13),
        ] {
            match parse_identifier(t, 0) {
                Ok(id) => panic!("{t} parsed as {id:?}"),
                Err(e) => assert_eq!(e.position, p, "{t}: {e}"),
            }
        }
    }
}
