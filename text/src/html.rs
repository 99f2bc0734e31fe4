//! Text put into HTML: the receiver's status page and `zfsync report --html` show names and
//! errors that came from the history (some of them over the network), so every such value
//! goes through [`escape`] and none can add markup.

/// `s` with the five characters HTML gives meaning to escaped (`&`, `<`, `>`, `"`, `'`),
/// fit for element text and for quoted attribute values.
pub fn escape(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        for (text, want) in [
            ("tank/a", "tank/a"),
            ("<script>x</script>", "&lt;script&gt;x&lt;/script&gt;"),
            ("a & b", "a &amp; b"),
            ("&amp;", "&amp;amp;"),
            (r#"say "hi" it's"#, "say &quot;hi&quot; it&#39;s"),
            ("é\n", "é\n"),
        ] {
            assert_eq!(escape(text), want, "{text:?}");
        }
    }
}
