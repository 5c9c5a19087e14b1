//! The limits of what operators write about the audience (roles, tags, profiles,
//! broadcasts): the server checks a request with them, and the log's reader checks
//! botwatch's own events with them again.

use crate::model::{AudienceChange, BroadcastInfo, Label, UserEdit};

/// Characters of a role's or tag's name.
pub const LABEL_NAME_CHARS: std::ops::RangeInclusive<usize> = 1..=64;
/// Characters of an information field's name and value.
pub const FIELD_NAME_CHARS: std::ops::RangeInclusive<usize> = 1..=64;
pub const FIELD_VALUE_CHARS: std::ops::RangeInclusive<usize> = 0..=1024;
/// Information fields one user may have.
pub const MAX_FIELDS: usize = 50;
/// Tags added or removed by one edit.
pub const MAX_TAGS_PER_EDIT: usize = 100;
/// Characters of the name and the gender an operator sets over the channels'.
pub const PROFILE_NAME_CHARS: usize = 256;
pub const PROFILE_GENDER_CHARS: usize = 32;

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Why `text` is not a good name for a role, a tag or a field: `None` when it is.
pub fn name_problem(text: &str, range: std::ops::RangeInclusive<usize>) -> Option<String> {
    let n = chars(text);
    if !range.contains(&n) {
        return Some(format!(
            "has {n} characters; {}–{} allowed",
            range.start(),
            range.end()
        ));
    }
    if text.trim() != text {
        return Some("starts or ends with a space".to_owned());
    }
    if text.chars().any(char::is_control) {
        return Some("holds a control character".to_owned());
    }
    None
}

fn key_problem(key: &str) -> Option<String> {
    let ok = (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (!ok).then(|| format!("{key:?} is not a key (1–64 of A-Z a-z 0-9 - _)"))
}

impl UserEdit {
    /// The first thing wrong with this edit, as `(field, reason)`.
    pub fn problem(&self) -> Option<(String, String)> {
        let field = |f: &str, r: String| Some((f.to_owned(), r));
        if let Some(name) = &self.name
            && chars(name) > PROFILE_NAME_CHARS
        {
            return field(
                "name",
                format!(
                    "has {} characters; at most {PROFILE_NAME_CHARS}",
                    chars(name)
                ),
            );
        }
        if let Some(gender) = &self.gender
            && chars(gender) > PROFILE_GENDER_CHARS
        {
            return field(
                "gender",
                format!("has more than {PROFILE_GENDER_CHARS} characters"),
            );
        }
        for (f, v) in [("name", &self.name), ("gender", &self.gender)] {
            if v.as_deref()
                .is_some_and(|v| v.chars().any(char::is_control))
            {
                return field(f, "holds a control character".to_owned());
            }
        }
        if let Some(role) = self.role.as_deref().filter(|r| !r.is_empty())
            && let Some(r) = key_problem(role)
        {
            return field("role", r);
        }
        for (f, tags) in [
            ("add_tags", &self.add_tags),
            ("remove_tags", &self.remove_tags),
        ] {
            if tags.len() > MAX_TAGS_PER_EDIT {
                return field(f, format!("at most {MAX_TAGS_PER_EDIT} tags at once"));
            }
            if let Some(r) = tags.iter().find_map(|t| key_problem(t)) {
                return field(f, r);
            }
        }
        if self.fields.len() > MAX_FIELDS {
            return field("fields", format!("at most {MAX_FIELDS} fields"));
        }
        for (name, value) in &self.fields {
            if let Some(r) = name_problem(name, FIELD_NAME_CHARS) {
                return field("fields", format!("the name {name:?} {r}"));
            }
            let n = chars(value);
            if !FIELD_VALUE_CHARS.contains(&n) {
                return field(
                    "fields",
                    format!(
                        "{name:?} has {n} characters; at most {}",
                        FIELD_VALUE_CHARS.end()
                    ),
                );
            }
            if value.chars().any(|c| c.is_control() && c != '\n') {
                return field("fields", format!("{name:?} holds a control character"));
            }
        }
        None
    }
}

impl Label {
    pub fn problem(&self) -> Option<(String, String)> {
        if let Some(r) = key_problem(&self.key) {
            return Some(("key".to_owned(), r));
        }
        let name = self.name.as_deref()?;
        name_problem(name, LABEL_NAME_CHARS).map(|r| ("name".to_owned(), r))
    }
}

impl AudienceChange {
    pub fn problem(&self) -> Option<(String, String)> {
        match self {
            AudienceChange::Edit(e) => e.problem(),
            AudienceChange::Label(l) => l.problem(),
        }
    }
}

impl BroadcastInfo {
    pub fn problem(&self) -> Option<(String, String)> {
        if let Some(r) = key_problem(&self.id) {
            return Some(("id".to_owned(), r));
        }
        for (f, v) in [("to", &self.to), ("filter", &self.filter), ("by", &self.by)] {
            if v.as_deref().is_some_and(|v| v.len() > 4096) {
                return Some((f.to_owned(), "is longer than 4096 bytes".to_owned()));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keys_and_fields_are_bounded() {
        assert_eq!(name_problem("Клієнти", LABEL_NAME_CHARS), None);
        assert!(name_problem("", LABEL_NAME_CHARS).is_some());
        assert!(name_problem(" VIP", LABEL_NAME_CHARS).is_some());
        assert!(name_problem("a\u{7}b", LABEL_NAME_CHARS).is_some());
        assert!(name_problem(&"я".repeat(65), LABEL_NAME_CHARS).is_some());
        let mut edit = UserEdit {
            role: Some("r-1f".to_owned()),
            ..UserEdit::default()
        };
        assert_eq!(edit.problem(), None);
        edit.add_tags.push("no spaces".to_owned());
        assert_eq!(edit.problem().map(|p| p.0).as_deref(), Some("add_tags"));
        let mut edit = UserEdit::default();
        edit.fields
            .insert("phone".to_owned(), "+380 44 000".to_owned());
        assert_eq!(edit.problem(), None);
        edit.fields.insert("notes".to_owned(), "x".repeat(1025));
        assert_eq!(edit.problem().map(|p| p.0).as_deref(), Some("fields"));
    }
}
