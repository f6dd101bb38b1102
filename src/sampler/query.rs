//! Query fingerprints: the last query of a backend with its literals removed, so the
//! stuck-connection view can name the query whose rows were never closed without
//! showing the data in it.
//!
//! String literals (`'…'`, `E'…'`, `$tag$…$tag$`), numbers and quoted-identifier-free
//! constants become `?`; comments go; whitespace collapses; lists of `?` collapse to one;
//! the result is cut at a character boundary. It is a lexer, not a parser: anything it
//! does not recognise is kept as it is, and no input makes it panic.

/// The fingerprint of `sql`: its first `max_chars` characters, followed by an ellipsis
/// when it was cut.
pub fn fingerprint(sql: &str, max_chars: usize) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len().min(max_chars * 2));
    let mut i = 0;
    let mut space = false;
    let push_space = |out: &mut String, space: &mut bool| {
        if *space && !out.is_empty() {
            out.push(' ');
        }
        *space = false;
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                space = true;
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                space = true;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i = (i + 2).min(b.len());
                space = true;
            }
            b'\'' => {
                i = skip_quoted(b, i + 1, b'\'', false);
                push_space(&mut out, &mut space);
                out.push('?');
            }
            b'E' | b'e' | b'B' | b'b' | b'X' | b'x' | b'N' | b'n'
                if b.get(i + 1) == Some(&b'\'') && !prev_is_word(b, i) =>
            {
                i = skip_quoted(b, i + 2, b'\'', c == b'E' || c == b'e');
                push_space(&mut out, &mut space);
                out.push('?');
            }
            b'"' => {
                // A quoted identifier: kept.
                let end = skip_quoted(b, i + 1, b'"', false);
                push_space(&mut out, &mut space);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'$' if !prev_is_word(b, i) => {
                if let Some(end) = dollar_quote_end(b, i) {
                    i = end;
                    push_space(&mut out, &mut space);
                    out.push('?');
                } else {
                    // $1 parameters stay as they are: they carry no data.
                    let start = i;
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    push_space(&mut out, &mut space);
                    out.push_str(&sql[start..i]);
                }
            }
            b'0'..=b'9' if !prev_is_word(b, i) => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_')
                {
                    i += 1;
                }
                push_space(&mut out, &mut space);
                out.push('?');
            }
            _ => {
                let ch_len = utf8_len(c);
                let end = (i + ch_len).min(b.len());
                push_space(&mut out, &mut space);
                match sql.get(i..end) {
                    Some(s) => out.push_str(s),
                    None => out.push('\u{fffd}'),
                }
                i = end;
            }
        }
    }
    let collapsed = collapse_lists(&out);
    truncate(collapsed, max_chars)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

fn prev_is_word(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// Index after the closing `q` (a doubled `q` is an escaped one, and so is `\q` in an
/// `E'…'` string); the end when unclosed.
fn skip_quoted(b: &[u8], mut i: usize, q: u8, backslash: bool) -> usize {
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// For `$tag$…$tag$` starting at `i`, the index after the closing tag.
fn dollar_quote_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') && !b[j].is_ascii_digit() {
        j += 1;
    }
    if b.get(j) != Some(&b'$') {
        return None;
    }
    let tag = &b[i..=j];
    let body = j + 1;
    let rest = &b[body..];
    let pos = rest.windows(tag.len()).position(|w| w == tag)?;
    Some(body + pos + tag.len())
}

/// `(?, ?, ?)` and `?, ?` runs become a single `?`.
fn collapse_lists(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('?') {
        out.push_str(&rest[..=pos]);
        rest = &rest[pos + 1..];
        loop {
            let t = rest.trim_start_matches(' ');
            match t
                .strip_prefix(',')
                .map(|t| t.trim_start_matches(' '))
                .and_then(|t| t.strip_prefix('?'))
            {
                Some(after) => rest = after,
                None => break,
            }
        }
    }
    out.push_str(rest);
    out
}

fn truncate(s: String, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        None => s,
        Some((cut, _)) => {
            let mut t = s[..cut].to_string();
            t.push('…');
            t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn literals_removed() {
        let cases = [
            (
                "SELECT * FROM orders WHERE id = 42",
                "SELECT * FROM orders WHERE id = ?",
            ),
            (
                "select name from users where email = 'a@b.c' and age > 3.5",
                "select name from users where email = ? and age > ?",
            ),
            (
                "SELECT 'it''s', E'a\\'b', $$body$$, $fn$x$fn$ FROM t",
                "SELECT ? FROM t",
            ),
            (
                "SELECT * FROM t WHERE id IN (1, 2, 3, 4)",
                "SELECT * FROM t WHERE id IN (?)",
            ),
            (
                "INSERT INTO t (a, b) VALUES ($1, $2)",
                "INSERT INTO t (a, b) VALUES ($1, $2)",
            ),
            (
                "SELECT  a\n  FROM t -- trailing comment\n WHERE b = 1 /* why */",
                "SELECT a FROM t WHERE b = ?",
            ),
            (
                "SELECT \"Weird\"\"Name\" FROM t2 WHERE x = X'1F'",
                "SELECT \"Weird\"\"Name\" FROM t2 WHERE x = ?",
            ),
            ("SELECT col1, t2.c3 FROM t2", "SELECT col1, t2.c3 FROM t2"),
            ("SELECT 'unclosed", "SELECT ?"),
            (r"SELECT 'C:\' AS dir, 7", "SELECT ? AS dir, ?"),
            ("SELECT $1::text, 'ü', 1e10", "SELECT $1::text, ?"),
        ];
        for (sql, want) in cases {
            assert_eq!(fingerprint(sql, 1000), want, "{sql}");
        }
    }

    #[test]
    fn truncated_at_a_character_boundary() {
        assert_eq!(fingerprint("SELECT ünïcödé FROM t", 9), "SELECT ün…");
        assert_eq!(fingerprint("SELECT 1", 8), "SELECT ?");
    }

    #[test]
    fn never_panics_on_odd_input() {
        for sql in [
            "",
            "$",
            "$a",
            "$a$",
            "'",
            "E'",
            "/*",
            "--",
            "\u{0}\u{ffff}",
            "é'é",
            "$$$$",
            "1.2.3e",
        ] {
            let _ = fingerprint(sql, 5);
        }
    }
}
