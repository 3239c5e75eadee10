//! Guards ARCHITECTURE.md's import rules: the document lists which
//! top-level modules each module may use, and this test reads that list and
//! every `crate::…` path in each module's source, so the map cannot drift
//! from the code unnoticed.

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    const SECTION: &str = "## Who may import what";

    /// `module → allowed modules`, and the leaves everyone may use.
    fn rules(doc: &str) -> (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>) {
        let start = doc.find(SECTION).expect("ARCHITECTURE.md has the import rules section");
        let body = &doc[start + SECTION.len()..];
        let body = &body[..body.find("\n## ").unwrap_or(body.len())];
        // One rule per bullet; continuation lines belong to the bullet above.
        let mut bullets: Vec<String> = Vec::new();
        for line in body.lines() {
            if let Some(rest) = line.strip_prefix("- ") {
                bullets.push(rest.to_owned());
            } else if line.starts_with("  ") {
                if let Some(last) = bullets.last_mut() {
                    last.push(' ');
                    last.push_str(line.trim());
                }
            }
        }
        let names = |text: &str| -> BTreeSet<String> {
            text.split('`')
                .skip(1)
                .step_by(2)
                .map(|t| t.split("::").next().unwrap_or_default().to_owned())
                .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                .collect()
        };
        let mut allowed = BTreeMap::new();
        let mut leaves = BTreeSet::new();
        for b in bullets {
            if let Some(rest) = b.strip_prefix("Leaves every module may use:") {
                leaves = names(rest);
            } else if let Some((head, tail)) = b.split_once('→') {
                let module = names(head).into_iter().next().expect("a module name before →");
                // Parenthesised notes may name types, not modules: skip them.
                let mut plain = String::new();
                let mut depth = 0;
                for c in tail.chars() {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ if depth == 0 => plain.push(c),
                        _ => {}
                    }
                }
                allowed.insert(module, names(&plain));
            }
        }
        (allowed, leaves)
    }

    /// Top-level modules named by `crate::name` or `crate::{a, b::c}`.
    fn imports(source: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let word = |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect() };
        for (i, _) in source.match_indices("crate::") {
            let rest = &source[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for item in group.split(',') {
                    let w = word(item.trim());
                    if !w.is_empty() {
                        out.insert(w);
                    }
                }
            } else {
                let w = word(rest);
                if !w.is_empty() {
                    out.insert(w);
                }
            }
        }
        out
    }

    fn sources(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read src dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(std::fs::read_to_string(&path).expect("read source"));
            }
        }
    }

    #[test]
    fn architecture_import_rules_hold() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
        let (allowed, leaves) = rules(&doc);
        assert!(allowed.len() >= 8, "the rules were read: {allowed:?}");
        assert!(leaves.contains("error"), "leaves were read: {leaves:?}");
        let mut violations = Vec::new();
        for (module, ok) in &allowed {
            let mut files = Vec::new();
            let dir = root.join("src").join(module);
            if dir.is_dir() {
                sources(&dir, &mut files);
            }
            if let Ok(single) = std::fs::read_to_string(root.join("src").join(format!("{module}.rs"))) {
                files.push(single);
            }
            assert!(!files.is_empty(), "module {module} has no source");
            let used: BTreeSet<String> = files.iter().flat_map(|f| imports(f)).collect();
            for u in used {
                if u != *module && !ok.contains(&u) && !leaves.contains(&u) {
                    violations.push(format!("{module} → {u}"));
                }
            }
        }
        assert!(
            violations.is_empty(),
            "imports not allowed by ARCHITECTURE.md: {violations:?}"
        );
    }

    #[test]
    fn architecture_rules_parser_reads_bullets() {
        let doc = "## Who may import what\n\n- `a` → `b` (the `c::D` type), `d::e`.\n  `f`.\n\
                   - `g` → nothing.\n- Leaves every module may use: `x`, `y`.\n\n## Next\n- `z` → `q`\n";
        let (allowed, leaves) = rules(doc);
        assert_eq!(allowed["a"], ["b", "d", "f"].map(String::from).into());
        assert!(allowed["g"].is_empty());
        assert!(!allowed.contains_key("z"));
        assert_eq!(leaves, ["x", "y"].map(String::from).into());
        assert_eq!(
            imports("use crate::{x, y::Z};\nlet a = crate::w::f();"),
            ["w", "x", "y"].map(String::from).into()
        );
    }
}
