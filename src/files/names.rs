//! Stored file names, made as PocketBase makes them (so names look the same
//! after a move): the original name in snake case (at most 100 bytes,
//! padded with random characters when shorter than 3), `_`, 10 random
//! characters, and the cleaned extension (at most 20 bytes). Only ASCII
//! letters, digits and `_` survive in the stem and `.*-+=#` besides in the
//! extension, so a stored name never holds a path separator, `..`, a
//! space or a control character, whatever the client sent.

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// The extension PocketBase keeps: from the second-to-last dot if there is
/// one (`.tar.gz`), else from the last.
fn extension(name: &str) -> &str {
    let Some(last) = name.rfind('.') else { return "" };
    match name[..last].rfind('.') {
        Some(second) => &name[second..],
        None => &name[last..],
    }
}

fn clean_extension(ext: &str) -> String {
    let mut kept = String::new();
    for c in ext
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_.*-+=#".contains(*c))
    {
        // No `..` in a stored name.
        if !(c == '.' && kept.ends_with('.')) {
            kept.push(c);
        }
    }
    let kept = kept.trim_matches('.');
    // The last 20 bytes at most (ASCII by now, so any cut is a char boundary).
    let kept = &kept[kept.len().saturating_sub(20)..];
    let kept = kept.trim_matches('.');
    if kept.is_empty() {
        String::new()
    } else {
        format!(".{kept}")
    }
}

/// Snake case over ASCII words: split at anything that is not an ASCII
/// letter or digit, `_` between words and before an upper-case letter that
/// follows a lower-case one, all lower case.
fn snake_case(s: &str) -> String {
    let mut out = String::new();
    for word in s.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push('_');
        }
        let mut prev_upper = true;
        for c in word.chars() {
            if c.is_ascii_uppercase() && !prev_upper {
                out.push('_');
            }
            prev_upper = c.is_ascii_uppercase();
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// A new stored name for an upload called `original`; `sniffed_ext` (with
/// its dot, e.g. `.png`) is used when the original has no usable extension.
pub fn stored_name(original: &str, sniffed_ext: &str) -> String {
    // Only the tail of a very long name matters (and bounds the work).
    let mut start = original.len().saturating_sub(300);
    while !original.is_char_boundary(start) {
        start += 1;
    }
    let original = &original[start..];
    // A client may send a path ("C:\\x\\a.png", "../../a.png"): the base name only.
    let base = original.rsplit(['/', '\\']).next().unwrap_or_default();
    let ext_raw = extension(base);
    let mut ext = clean_extension(ext_raw);
    if ext.is_empty() {
        ext = clean_extension(sniffed_ext);
    }
    let mut stem = snake_case(base[..base.len() - ext_raw.len()].trim_matches('.'));
    if stem.len() < 3 {
        stem.push_str(&crate::ids::random_from(ALPHABET, 10));
    } else if stem.len() > 100 {
        stem.truncate(100);
    }
    format!("{stem}_{}{ext}", crate::ids::random_from(ALPHABET, 10))
}

/// Whether `name` could have been made by [`stored_name`]: what a request
/// may name when it refers to a stored file (serving, `field-`). Anything
/// else cannot be a stored file, so it is refused before any lookup.
pub fn is_stored_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 160
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.*-+=#".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(name: &str) -> (String, String) {
        // stem_RANDOM.ext -> (stem, ext)
        let (head, ext) = match name.find('.') {
            Some(i) => (&name[..i], &name[i..]),
            None => (name, ""),
        };
        let (stem, random) = head.rsplit_once('_').unwrap();
        assert_eq!(random.len(), 10, "{name}");
        (stem.to_owned(), ext.to_owned())
    }

    #[test]
    fn names_follow_pocketbase() {
        assert_eq!(
            shape(&stored_name("My Photo.PNG", "")),
            ("my_photo".into(), ".PNG".into())
        );
        assert_eq!(
            shape(&stored_name("helloWorld.tar.gz", "")),
            ("hello_world".into(), ".tar.gz".into())
        );
        assert_eq!(shape(&stored_name("../../etc/passwd", "")).1, "");
        let (stem, _) = shape(&stored_name("a.txt", ""));
        assert_eq!(stem.len(), 11, "short stems get 10 random characters");
        assert_eq!(shape(&stored_name("noext", ".png")), ("noext".into(), ".png".into()));
        assert_eq!(shape(&stored_name("évian.jpg", "")).1, ".jpg");
        assert!(is_stored_name(&stored_name("x.a..b", "")));
        let long = format!("{}.{}", "x".repeat(500), "y".repeat(40));
        let n = stored_name(&long, "");
        assert!(n.len() <= 100 + 11 + 21, "{n}");
        for original in [
            "a/b/../c.png",
            "x\0y.png",
            "<script>.html",
            " .. ",
            "C:\\dir\\f.exe",
            "\u{202e}gnp.exe",
        ] {
            let n = stored_name(original, "");
            assert!(is_stored_name(&n), "{original:?} -> {n:?}");
        }
    }

    #[test]
    fn only_plain_names_are_stored_names() {
        for bad in ["", "../a", "a/b", ".hidden", "a..b", "a b", "a\0", &"x".repeat(161)] {
            assert!(!is_stored_name(bad), "{bad:?}");
        }
        assert!(is_stored_name("my_photo_abcdefghij.png"));
    }
}
