//! Guards ARCHITECTURE.md's import rules: the document lists which
//! top-level modules each module may use, and this test reads that list and
//! every `crate::…` path in each module's source, so the map cannot drift
//! from the code unnoticed. Every top-level module must have a rule, and the
//! imports actually used must form no cycle between top-level modules (a
//! cycle would let a change anywhere on it reach everything else on it).

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

    /// Each top-level module (a `src/<name>/` folder or `src/<name>.rs`)
    /// and the other top-level modules its files name. The crate root, the
    /// binary and this test are not modules of the map.
    fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
        let mut graph = BTreeMap::new();
        for entry in std::fs::read_dir(src).expect("read src").flatten() {
            let path = entry.path();
            let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if ["lib", "main", "architecture"].contains(&name.as_str()) {
                continue;
            }
            let mut files = Vec::new();
            if path.is_dir() {
                sources(&path, &mut files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(std::fs::read_to_string(&path).expect("read source"));
            } else {
                continue;
            }
            let mut used: BTreeSet<String> = files.iter().flat_map(|f| imports(f)).collect();
            used.remove(&name);
            graph.entry(name).or_insert_with(BTreeSet::new).extend(used);
        }
        graph
    }

    /// One cycle in `graph` (its modules in order, the first repeated at
    /// the end), if there is any.
    fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        // 0 = unvisited, 1 = on the current path, 2 = done.
        fn visit(
            node: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            mark: &mut BTreeMap<String, u8>,
            path: &mut Vec<String>,
        ) -> Option<Vec<String>> {
            mark.insert(node.to_owned(), 1);
            path.push(node.to_owned());
            for next in graph.get(node).into_iter().flatten() {
                match mark.get(next.as_str()).copied().unwrap_or(0) {
                    1 => {
                        let from = path.iter().position(|m| m == next).unwrap_or(0);
                        let mut cycle = path[from..].to_vec();
                        cycle.push(next.clone());
                        return Some(cycle);
                    }
                    0 => {
                        if let Some(c) = visit(next, graph, mark, path) {
                            return Some(c);
                        }
                    }
                    _ => {}
                }
            }
            path.pop();
            mark.insert(node.to_owned(), 2);
            None
        }
        let mut mark = BTreeMap::new();
        for node in graph.keys() {
            if mark.get(node.as_str()).copied().unwrap_or(0) == 0 {
                if let Some(c) = visit(node, graph, &mut mark, &mut Vec::new()) {
                    return Some(c);
                }
            }
        }
        None
    }

    #[test]
    fn architecture_import_rules_hold() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
        let (allowed, leaves) = rules(&doc);
        assert!(allowed.len() >= 8, "the rules were read: {allowed:?}");
        assert!(leaves.contains("error"), "leaves were read: {leaves:?}");
        let graph = module_graph(&root.join("src"));
        assert!(
            graph.contains_key("core") && graph.contains_key("query"),
            "modules were read: {graph:?}"
        );
        let mut violations = Vec::new();
        for (module, used) in &graph {
            let Some(ok) = allowed.get(module) else {
                violations.push(format!("{module} has no rule"));
                continue;
            };
            for u in used {
                if !ok.contains(u) && !leaves.contains(u) {
                    violations.push(format!("{module} → {u}"));
                }
            }
        }
        for module in allowed.keys() {
            if !graph.contains_key(module) {
                violations.push(format!("rule for {module}, which has no source"));
            }
        }
        assert!(
            violations.is_empty(),
            "imports not allowed by ARCHITECTURE.md: {violations:?}"
        );
        assert_eq!(find_cycle(&graph), None, "an import cycle between top-level modules");
    }

    #[test]
    fn architecture_cycle_finder_finds_cycles() {
        let graph = |edges: &[(&str, &str)]| {
            let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (a, b) in edges {
                g.entry((*a).to_owned()).or_default().insert((*b).to_owned());
                g.entry((*b).to_owned()).or_default();
            }
            g
        };
        assert_eq!(find_cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
        assert_eq!(
            find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])),
            Some(["a", "b", "c", "a"].map(String::from).to_vec())
        );
        assert_eq!(
            find_cycle(&graph(&[("x", "y"), ("y", "z"), ("z", "y")])),
            Some(["y", "z", "y"].map(String::from).to_vec())
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
