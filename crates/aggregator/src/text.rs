use unicode_normalization::UnicodeNormalization;

/// The form in which inbound texts are counted for "top messages": Unicode NFKC,
/// lower case, trimmed, inner whitespace collapsed to one space. `None` when nothing
/// is left (such a text is not counted).
pub fn normalize_top_text(text: &str) -> Option<String> {
    let nfkc: String = text.nfkc().collect();
    let lower = nfkc.to_lowercase();
    let collapsed = lower.split_whitespace().collect::<Vec<_>>().join(" ");
    (!collapsed.is_empty()).then_some(collapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_normalised_as_product_md_says() {
        assert_eq!(
            normalize_top_text("  Where   is my\tORDER? "),
            Some("where is my order?".into())
        );
        assert_eq!(normalize_top_text("ПРИВІТ"), Some("привіт".into()));
        // NFKC: the ligature and the full-width letters become plain ones.
        assert_eq!(normalize_top_text("ﬁnd ＡＢＣ"), Some("find abc".into()));
        assert_eq!(normalize_top_text(" \u{3000}\n "), None);
    }
}
