//! "Did you mean": the names closest to a mistyped one, by edit distance, for the errors
//! that name an unknown table, view, config key or format. Kept small and dependency-free:
//! the candidate lists are a few dozen names.

/// Levenshtein distance between `a` and `b` (case-insensitive, by characters).
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Up to `n` candidates closest to `word`, nearest first (ties in the candidates' order).
/// Only plausible ones: within a third of the longer name's length plus two edits, or
/// containing / contained in `word`.
pub fn closest<'a>(word: &str, candidates: &[&'a str], n: usize) -> Vec<&'a str> {
    let lower = word.to_lowercase();
    let mut scored: Vec<(usize, usize, &'a str)> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let d = distance(word, c);
            let cl = c.to_lowercase();
            let near = d <= word.chars().count().max(c.chars().count()) / 3 + 2;
            let inside = lower.len() >= 3 && (cl.contains(&lower) || lower.contains(&cl));
            (near || inside).then_some((d, i, *c))
        })
        .collect();
    scored.sort();
    scored.dedup_by_key(|s| s.2);
    scored.into_iter().take(n).map(|(_, _, c)| c).collect()
}

/// `` `a`, `b` or `c` `` for a message.
pub fn or_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_are_edit_counts() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("Users", "users"), 0);
        assert_eq!(distance("locaton", "location"), 1);
    }

    #[test]
    fn the_closest_plausible_names_come_first() {
        let names = ["access_packages", "assignments", "users", "audit_events"];
        assert_eq!(closest("acess_package", &names, 3), ["access_packages"]);
        assert_eq!(closest("user", &names, 3), ["users"]);
        assert!(closest("zzzzzzzzzz", &names, 3).is_empty());
        assert_eq!(or_list(&["a", "b", "c"]), "`a`, `b` or `c`");
        assert_eq!(or_list(&["a"]), "`a`");
    }
}
