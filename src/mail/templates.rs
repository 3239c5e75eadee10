//! Turning a mail template (an auth collection's `{subject, body}`, see
//! `schema::mail_templates`) into a [`Mail`]: placeholders filled, the HTML
//! body in a small layout, and a plain-text alternative derived from it.
//!
//! Placeholders are filled in one pass over the template: a value that
//! itself looks like a placeholder (a user who names themself `{TOKEN}`)
//! stays text. In the HTML body every value is HTML-escaped (a record's
//! `name` is typed by its user; the body is the admin's HTML); the subject
//! is plain text, so values go in as they are, with line breaks and other
//! control characters turned into spaces (a subject is one header line).

use std::borrow::Cow;

use super::Mail;

/// The longest placeholder name looked up (`{RECORD:<field>}`, a field name
/// is at most 255 characters): a `{` farther from its `}` is text.
const MAX_PLACEHOLDER: usize = 300;

/// Replaces each `{NAME}` of `template` for which `value` has a value, in
/// one left-to-right pass; anything else is copied as it is.
pub fn fill<'a, F>(template: &str, value: F) -> String
where
    F: Fn(&str) -> Option<Cow<'a, str>>,
{
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .char_indices()
            .take_while(|(i, _)| *i <= MAX_PLACEHOLDER)
            .skip(1)
            .find(|(_, c)| *c == '}' || *c == '{')
            .filter(|(_, c)| *c == '}');
        match end.and_then(|(i, _)| value(&tail[..=i]).map(|v| (i, v))) {
            Some((i, v)) => {
                out.push_str(&v);
                rest = &tail[i + 1..];
            }
            None => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// HTML-escapes `s` for text and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A subject as one clean line: control characters become spaces.
fn one_line(s: &str) -> String {
    let line: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    line.trim().to_owned()
}

/// A template with its placeholders filled: the subject line, the HTML
/// body (before the layout) and its plain-text version.
pub struct Filled {
    pub subject: String,
    pub body: String,
    pub text: String,
}

/// Fills `subject` and `body` with `values` (placeholder, with its braces
/// → raw value).
pub fn fill_template(subject: &str, body: &str, values: &[(String, String)]) -> Filled {
    let lookup = |key: &str| values.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let subject = one_line(&fill(subject, |k| lookup(k).map(Cow::Borrowed)));
    let body = fill(body, |k| lookup(k).map(|v| Cow::Owned(html_escape(v))));
    Filled {
        subject,
        text: html_to_text(&body),
        body,
    }
}

/// The mail to `to` from a template, with `values` filled in.
pub fn render(to: &str, subject: &str, body: &str, values: &[(String, String)]) -> Mail {
    let f = fill_template(subject, body, values);
    Mail {
        to: to.to_owned(),
        html: layout(&f.subject, &f.body),
        text: f.text,
        subject: f.subject,
    }
}

/// The dashboard's preview of a filled template: the layout of [`layout`]
/// with its styles in the dashboard's `mail-preview.css` instead of inline
/// (the preview runs under the dashboard's CSP, which refuses inline
/// styles; mail clients need them inline).
pub fn preview_document(f: &Filled) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n\
         <link rel=\"stylesheet\" href=\"/_/assets/mail-preview.css\">\n</head>\n\
         <body class=\"mail\">\n<div class=\"mail-content\">\n{}\n</div>\n</body>\n</html>\n",
        html_escape(&f.subject),
        f.body
    )
}

/// The body inside a minimal HTML document (inline styles only: mail
/// clients drop linked stylesheets).
fn layout(subject: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n</head>\n\
         <body style=\"margin:0;padding:24px 16px;background:#f4f5f7;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-size:15px;line-height:1.5;color:#1f2328;\">\n\
         <div style=\"max-width:560px;margin:0 auto;padding:24px;background:#ffffff;border-radius:8px;\">\n{body}\n</div>\n</body>\n</html>\n",
        html_escape(subject)
    )
}

/// Elements whose content is not text.
const SKIPPED: [&str; 4] = ["style", "script", "head", "title"];
/// Elements that end a paragraph (a blank line) or a line.
const PARAGRAPHS: [&str; 9] = ["p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "table"];
const LINES: [&str; 4] = ["br", "li", "tr", "hr"];

/// The plain-text alternative of an HTML body: tags dropped, paragraphs as
/// blank lines, a link as its text followed by its address (alone on its
/// line when the text is the address), the common entities decoded.
///
/// A small scanner rather than an HTML parser crate: the input is the
/// admin's template with escaped values, and the output is plain text that
/// nothing renders, so a misread tag costs formatting, not safety.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    let mut skip_until: Option<String> = None;
    let mut link: Option<(String, usize)> = None;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            if skip_until.is_none() {
                push_text(&mut out, rest);
            }
            break;
        };
        if skip_until.is_none() {
            push_text(&mut out, &rest[..lt]);
        }
        let tag_src = &rest[lt..];
        let Some(gt) = tag_src.find('>') else {
            push_text(&mut out, tag_src);
            break;
        };
        let tag = &tag_src[1..gt];
        rest = &tag_src[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(until) = &skip_until {
            if closing && *until == name {
                skip_until = None;
            }
            continue;
        }
        if !closing && SKIPPED.contains(&name.as_str()) && !tag.ends_with('/') {
            skip_until = Some(name);
            continue;
        }
        if PARAGRAPHS.contains(&name.as_str()) {
            break_line(&mut out, 2);
        } else if LINES.contains(&name.as_str()) {
            break_line(&mut out, 1);
        } else if name == "a" && !closing {
            link = attribute(tag, "href").map(|h| (decode_entities(&h).into_owned(), out.len()));
        } else if name == "a" {
            if let Some((href, at)) = link.take() {
                // A line break inside the link may have dropped spaces
                // from before it: `at` can lie past the end, or in a
                // character written since.
                let mut at = at.min(out.len());
                while !out.is_char_boundary(at) {
                    at -= 1;
                }
                let label = out[at..].trim().to_owned();
                if !href.is_empty() && label != href {
                    out.truncate(at);
                    if !label.is_empty() {
                        out.push_str(&label);
                        out.push_str(": ");
                    }
                    out.push_str(&href);
                }
            }
        }
    }
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let mut text = String::new();
    let mut blank = 0;
    for line in lines {
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !text.is_empty() {
            text.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        text.push_str(line);
    }
    text
}

/// Appends HTML text: whitespace runs collapse to one space, as a browser
/// shows them.
fn push_text(out: &mut String, raw: &str) {
    let decoded = decode_entities(raw);
    for c in decoded.chars() {
        if c.is_whitespace() && c != '\u{a0}' {
            if !out.is_empty() && !out.ends_with([' ', '\n']) {
                out.push(' ');
            }
        } else {
            out.push(if c == '\u{a0}' { ' ' } else { c });
        }
    }
}

/// Ends the current line, with `n` line breaks in all.
fn break_line(out: &mut String, n: usize) {
    while out.ends_with(' ') {
        out.pop();
    }
    let have = out.len() - out.trim_end_matches('\n').len();
    for _ in have..n {
        out.push('\n');
    }
}

/// The value of attribute `name` in a start tag's source (quoted or not).
fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(name) {
        let at = from + i;
        from = at + name.len();
        let before_ok = lower[..at].ends_with(|c: char| c.is_whitespace());
        let after = lower[from..].trim_start();
        if !before_ok || !after.starts_with('=') {
            continue;
        }
        let value_at = tag.len() - after.len() + 1;
        let v = tag[value_at..].trim_start();
        return Some(match v.chars().next() {
            Some(q @ ('"' | '\'')) => v[1..].split(q).next().unwrap_or_default().to_owned(),
            _ => v
                .split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .unwrap_or_default()
                .to_owned(),
        });
    }
    None
}

/// Decodes the named entities templates use and numeric ones.
fn decode_entities(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let decoded = tail.find(';').filter(|semi| *semi <= 10).and_then(|semi| {
            let name = &tail[1..semi];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => name.strip_prefix('#').and_then(|n| {
                    let code = match n.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => n.parse().ok(),
                    };
                    code.and_then(char::from_u32)
                }),
            };
            c.map(|c| (c, semi))
        });
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn templates_fill_in_one_pass_and_keep_unknown_placeholders() {
        let v = values(&[("{TOKEN}", "t0k"), ("{RECORD:name}", "{TOKEN}")]);
        let lookup = |k: &str| v.iter().find(|(n, _)| n == k).map(|(_, x)| Cow::Borrowed(x.as_str()));
        assert_eq!(fill("a {TOKEN} b", lookup), "a t0k b");
        assert_eq!(
            fill("{RECORD:name}/{TOKEN}", lookup),
            "{TOKEN}/t0k",
            "values are not filled again"
        );
        assert_eq!(fill("{NOPE} {{TOKEN}} {", lookup), "{NOPE} {t0k} {");
        assert_eq!(fill("ünï {TOKEN}}", lookup), "ünï t0k}");
    }

    #[test]
    fn templates_escape_html_values_but_not_the_subject() {
        let v = values(&[("{RECORD:name}", "<script>alert(1)</script> & \"x\"\r\nBcc: evil@x")]);
        let m = render("a@b.c", "Hi {RECORD:name}", "<p>Hi {RECORD:name}</p>", &v);
        assert_eq!(m.subject, "Hi <script>alert(1)</script> & \"x\"  Bcc: evil@x");
        assert!(
            m.html
                .contains("<p>Hi &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"),
            "{}",
            m.html
        );
        assert!(!m.html.contains("<script>"));
        assert!(m.html.contains("<title>Hi &lt;script&gt;"));
        assert!(
            m.text.starts_with("Hi <script>alert(1)</script> & \"x\" Bcc: evil@x"),
            "{}",
            m.text
        );
    }

    #[test]
    fn templates_text_alternative_reads_like_the_mail() {
        let html = "<style>p{color:red}</style><p>Hello,</p>\n<p>Open:</p>\n\
                    <p><a href=\"https://x.test/a?b=1&amp;c=2\">https://x.test/a?b=1&amp;c=2</a></p>\
                    <p><a class=\"btn\" href='https://x.test/v'>Verify</a></p><p>Line<br/>two&nbsp;&#x41;&#66;</p>";
        assert_eq!(
            html_to_text(html),
            "Hello,\n\nOpen:\n\nhttps://x.test/a?b=1&c=2\n\nVerify: https://x.test/v\n\nLine\ntwo AB"
        );
        assert_eq!(html_to_text("plain & <b>bold</b> text < 3"), "plain & bold text < 3");
        assert_eq!(html_to_text("a <unclosed"), "a <unclosed");
        // Spaces before a link that a line break inside it removes.
        assert_eq!(html_to_text("x&nbsp;&nbsp;<a href=\"u\"><br>é</a>"), "x\né: u");
    }

    proptest::proptest! {
        /// Whatever an admin writes, making the text part never panics.
        #[test]
        fn templates_text_of_any_markup_never_panics(s in "(<a href=\"[a-zé ]{0,3}\">|</a>|<br>|<p>|</p>|&nbsp;|&#x41;|&amp|<style>|</style>|[ é\\n<>&;x]){0,40}") {
            let _ = html_to_text(&s);
            let _ = fill(&s, |k| (k == "{x}").then_some(Cow::Borrowed("v")));
        }
    }
}
