//! Tool and prompt names before policy judges them. Cedar compares names
//! exactly, so a name a server would read as another one is a way around a
//! guard: a look-alike (`dеlete_file` with a Cyrillic `е`), an invisible
//! character, or a case variant on a server that matches names without
//! case. Names outside the MCP character set are refused (with
//! `policy.strict_names`), and a name that differs only in case from one
//! the server listed is refused too, naming the listed one.

use std::{
    collections::{HashMap, HashSet},
    sync::RwLock,
};

/// Longest name the MCP specification allows.
const MAX_NAME: usize = 128;

/// Names kept per server and kind; past this a server's list is not
/// learned further (memory stays bounded whatever a server answers).
const MAX_KNOWN: usize = 10_000;

/// Why `name` is not a name policy can judge, if it is not. The MCP
/// character set (ASCII letters, digits, `_`, `-`, `.`), plus `/` and `:`
/// that some servers use as namespace separators.
pub fn check(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!(
            "name is {} bytes; names are 1 to {MAX_NAME} characters",
            name.len()
        ));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-./:".contains(*c)))
    {
        Some(c) => Err(format!(
            "name {:?} contains U+{:04X}; names are ASCII letters, digits, '_', '-', '.', '/' \
             and ':' (policy.strict_names)",
            name.escape_default().to_string(),
            u32::from(c)
        )),
        None => Ok(()),
    }
}

/// Names each server listed, per kind ("tools", "prompts").
#[derive(Default)]
pub struct Known {
    names: RwLock<HashMap<(String, &'static str), HashSet<String>>>,
}

impl Known {
    /// Adds the names of a list answer (before it is filtered per caller).
    pub fn learn<'a>(
        &self,
        server: &str,
        kind: &'static str,
        names: impl Iterator<Item = &'a str>,
    ) {
        let key = (server.to_string(), kind);
        let fresh: Vec<&str> = {
            let map = self.names.read().unwrap_or_else(|p| p.into_inner());
            let known = map.get(&key);
            names
                .filter(|n| known.is_none_or(|k| !k.contains(*n)))
                .collect()
        };
        if fresh.is_empty() {
            return;
        }
        let mut map = self.names.write().unwrap_or_else(|p| p.into_inner());
        let set = map.entry(key).or_default();
        for n in fresh {
            if set.len() >= MAX_KNOWN {
                break;
            }
            set.insert(n.to_string());
        }
    }

    /// The listed name `name` is a case variant of, if it is not listed
    /// itself.
    pub fn case_variant(&self, server: &str, kind: &'static str, name: &str) -> Option<String> {
        let map = self.names.read().unwrap_or_else(|p| p.into_inner());
        let set = map.get(&(server.to_string(), kind))?;
        if set.contains(name) {
            return None;
        }
        set.iter().find(|k| k.eq_ignore_ascii_case(name)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_and_invisible_characters_are_refused() {
        assert!(check("delete_file").is_ok());
        assert!(check("db.query").is_ok());
        assert!(check("github/create-issue:v2").is_ok());
        for bad in [
            "d\u{0435}lete_file", // Cyrillic e
            "delete_file\u{200b}",
            "delete\u{0}file",
            "delete file",
            "ｄelete_file", // fullwidth
            "",
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.contains("name"), "{bad:?}: {e}");
        }
        assert!(check(&"a".repeat(129)).is_err());
        assert!(check("d\u{0435}lete").unwrap_err().contains("U+0435"));
    }

    #[test]
    fn a_case_variant_of_a_listed_name_is_found() {
        let k = Known::default();
        assert_eq!(
            k.case_variant("s", "tools", "Delete_File"),
            None,
            "nothing learnt"
        );
        k.learn("s", "tools", ["delete_file", "read_file"].into_iter());
        assert_eq!(
            k.case_variant("s", "tools", "Delete_File").as_deref(),
            Some("delete_file")
        );
        assert_eq!(k.case_variant("s", "tools", "delete_file"), None);
        assert_eq!(k.case_variant("s", "tools", "unknown"), None);
        assert_eq!(k.case_variant("s", "prompts", "DELETE_FILE"), None);
        assert_eq!(k.case_variant("other", "tools", "DELETE_FILE"), None);
    }
}
