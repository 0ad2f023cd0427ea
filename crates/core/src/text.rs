//! Text kept within a size (the one way berth cuts a string), and spans of
//! time as people read them.

/// `text` cut to at most `max_bytes` bytes, on a character boundary.
pub fn cut(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let end = (0..=max_bytes)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    &text[..end]
}

/// A span of milliseconds for people: `42 s`, `3 min 5 s`, `2 h 10 min`.
pub fn span(ms: i64) -> String {
    let s = (ms.max(0) + 999) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn cuts_on_a_character_boundary() {
        assert_eq!(cut("hello", 10), "hello");
        assert_eq!(cut("hello", 3), "hel");
        // "é" is two bytes: a cut inside it keeps what comes before.
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("aé", 3), "aé");
        assert_eq!(cut("日本", 1), "");
        assert_eq!(cut("", 0), "");
    }
}
