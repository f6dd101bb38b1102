//! Query fingerprints: the last query of a backend with its literals removed, so the
//! stuck-connection view can name the query whose rows were never closed without
//! showing the data in it.
//!
//! A lexer that splits the text into the tokens PostgreSQL's own lexer (`scan.l`) sees:
//! string constants (`'…'`, `E'…'`, `B'…'`, `X'…'`, `N'…'`, `U&'…'`, `$tag$…$tag$`) and
//! numbers become `?`; comments (`-- …` to the end of the line, `/* … */` nested) go;
//! identifiers (quoted or not, `$` inside them included), `$1` parameters, operators and
//! punctuation stay; whitespace collapses; lists of `?` collapse to one; the result is
//! cut at a character boundary. No input makes it panic.
//!
//! It **fails closed**: where the lexer cannot be sure where a literal ends, it drops the
//! rest of the text (the fingerprint then ends in `?…`) rather than guess and show data.
//! The cases:
//!
//! - a plain string whose end depends on `standard_conforming_strings`: with it off (or
//!   for an `E'…'` string) `\'` does not end the string, with it on it does, and the
//!   session that ran the query may have had either, so a string whose two readings end in
//!   different places is the end of the fingerprint;
//! - a string, dollar-quoted string or block comment that does not end: the server cuts
//!   the text it shows at `track_activity_query_size` (1,024 bytes by default), so a
//!   query's last literal is often cut open; everything after its start is literal.

/// The fingerprint of `sql`: its first `max_chars` characters, followed by an ellipsis
/// when it was cut (so at most `max_chars + 1` characters), or by `?…` when the lexer
/// stopped at a literal it could not delimit.
pub fn fingerprint(sql: &str, max_chars: usize) -> String {
    let mut lexer = Lexer {
        sql,
        b: sql.as_bytes(),
        out: String::with_capacity(sql.len().min(max_chars * 2)),
        space: false,
    };
    let mut i = 0;
    while i < lexer.b.len() {
        match lexer.token(i) {
            Some(next) => i = next,
            None => {
                lexer.out.push('…');
                break;
            }
        }
    }
    truncate(collapse_lists(&lexer.out), max_chars)
}

struct Lexer<'a> {
    sql: &'a str,
    b: &'a [u8],
    out: String,
    /// Whitespace or a comment came since the last token written.
    space: bool,
}

impl Lexer<'_> {
    /// Writes what the token at `i` leaves in the fingerprint; returns where the next
    /// token starts, or `None` when the rest of the text must be dropped (a `?` is
    /// written for the literal that starts at `i`).
    fn token(&mut self, i: usize) -> Option<usize> {
        let b = self.b;
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                self.space = true;
                Some(i + 1)
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                self.space = true;
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n' || c == b'\r')
                    .map_or(b.len(), |p| i + p);
                Some(end)
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                self.space = true;
                // An unclosed comment runs to the end: nothing after it is shown.
                Some(block_comment_end(b, i).unwrap_or(b.len()))
            }
            b'\'' => self.string(i, false),
            b'"' => {
                // A quoted identifier: kept as it is (`""` is a quote inside it).
                let end = quoted_end(b, i + 1, b'"', false).unwrap_or(b.len());
                self.word(i, end);
                Some(end)
            }
            b'$' => match dollar_tag_end(b, i) {
                Some(tag_end) => {
                    let tag = &b[i..tag_end];
                    self.literal();
                    let pos = b[tag_end..].windows(tag.len()).position(|w| w == tag)?;
                    Some(tag_end + pos + tag.len())
                }
                None => {
                    // `$1`: a parameter carries no data. A `$` alone is kept too.
                    let end = i + 1 + b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                    self.word(i, end);
                    Some(end)
                }
            },
            b'0'..=b'9' => {
                self.literal();
                Some(number_end(b, i))
            }
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                self.literal();
                Some(number_end(b, i + 1))
            }
            c if is_ident_start(c) => {
                let end = i + b[i..].iter().take_while(|&&c| is_ident_cont(c)).count();
                let word = &b[i..end];
                // E'…', B'…', X'…', N'…' and U&'…' are string constants.
                if b.get(end) == Some(&b'\'') && word.len() == 1 && b"EeBbXxNn".contains(&c) {
                    return self.string(end, c == b'E' || c == b'e');
                }
                if matches!(word, b"U" | b"u") && b.get(end..end + 2) == Some(b"&'") {
                    return self.string(end + 1, false);
                }
                self.word(i, end);
                Some(end)
            }
            _ => {
                // Operators and punctuation, one character at a time.
                let end = (i + utf8_len(c)).min(b.len());
                self.word(i, end);
                Some(end)
            }
        }
    }

    /// A string constant whose opening quote is at `quote`: `?`, and where it ends.
    /// `escapes` is true for `E'…'`, whose backslash escapes do not depend on the
    /// session; any other string must end in the same place whether `\` escapes or not.
    fn string(&mut self, quote: usize, escapes: bool) -> Option<usize> {
        self.literal();
        let with = quoted_end(self.b, quote + 1, b'\'', true);
        if escapes {
            return with;
        }
        let without = quoted_end(self.b, quote + 1, b'\'', false);
        if with != without {
            return None;
        }
        without
    }

    fn literal(&mut self) {
        self.separate();
        self.out.push('?');
    }

    /// Copies `sql[start..end]` (a token kept as it is).
    fn word(&mut self, start: usize, end: usize) {
        self.separate();
        match self.sql.get(start..end) {
            Some(s) => self.out.push_str(s),
            None => self.out.push('\u{fffd}'),
        }
    }

    fn separate(&mut self) {
        if self.space && !self.out.is_empty() {
            self.out.push(' ');
        }
        self.space = false;
    }
}

/// `[A-Za-z_]` and any byte of a non-ASCII character, as PostgreSQL's `ident_start`.
fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

/// `ident_cont`: also digits and `$`.
fn is_ident_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// The end of a number starting at `i`: digits, letters (exponents, `0x…`, and any
/// trailing junk, which the server refuses anyway), `_` and `.`.
fn number_end(b: &[u8], i: usize) -> usize {
    i + b[i..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b'.')
        .count()
}

/// Index after the closing `q` of a quoted token whose text starts at `i` (a doubled
/// `q` stands for itself, and with `backslash` so does `\q`); `None` when it does not
/// close.
fn quoted_end(b: &[u8], mut i: usize, q: u8, backslash: bool) -> Option<usize> {
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
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// For a `/* … */` comment starting at `i`, the index after its end; comments nest, as
/// in PostgreSQL. `None` when it does not end.
fn block_comment_end(b: &[u8], i: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = i;
    while j + 1 < b.len() {
        match (b[j], b[j + 1]) {
            (b'/', b'*') => {
                depth += 1;
                j += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                j += 2;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => j += 1,
        }
    }
    None
}

/// For a dollar-quote opening `$tag$` at `i` (the tag empty, or a letter, `_` or
/// non-ASCII byte followed by those and digits), the index after it.
fn dollar_tag_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if j < b.len() && is_ident_start(b[j]) {
        j += 1;
        while j < b.len() && (is_ident_start(b[j]) || b[j].is_ascii_digit()) {
            j += 1;
        }
    }
    (b.get(j) == Some(&b'$')).then_some(j + 1)
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

/// Queries built from known tokens, for the property that no byte from inside a
/// literal or comment reaches the fingerprint. Shared by the unit tests and the
/// `query_fingerprint` fuzz target (cargo-fuzz builds with `--cfg fuzzing`).
#[cfg(any(test, fuzzing))]
pub mod generated {
    /// The only bytes that go inside literals and comments and never outside them, next
    /// to the quotes, backslashes, dollars, stars and line ends that make lexing hard.
    pub const SECRET: &[u8] = b"QZqz";

    /// A query made of tokens chosen by `entropy`, with secrets inside its literals and
    /// comments, cut at a byte chosen by `entropy` as `track_activity_query_size` cuts
    /// it. Strings follow the session setting `standard_conforming_strings`, which
    /// `entropy` also picks (the fingerprint is not told).
    pub fn query(entropy: &[u8]) -> String {
        let mut g = Gen { e: entropy, i: 0 };
        let conforming = g.next() % 2 == 0;
        let cut = match g.next() {
            c if c % 2 == 0 => usize::MAX,
            c => usize::from(c) * 2,
        };
        let mut q = String::new();
        while g.more() {
            let token = g.next() % 16;
            match token {
                0 => q.push_str(g.pick(&[
                    "SELECT", "FROM", "WHERE", "t", "a_1", "x$y", "é", "E", "B", "N", "U", "ee",
                ])),
                1 => q.push_str(g.pick(&["42", "3.5", ".5", "1e10", "0x1F", "7"])),
                2 => q.push_str(
                    g.pick(&["=", "+", "(", ")", ",", "::", "<>", "*", "/", "-", "&", "!"]),
                ),
                3 => q.push_str(g.pick(&["$1", "$2", "$"])),
                4 => {
                    q.push('"');
                    q.push_str(g.pick(&["id", "we\"\"ird", "$a$", "--x", "/*"]));
                    q.push('"');
                }
                5 | 6 => {
                    // A plain string, as the session's setting writes it.
                    q.push('\'');
                    g.body(&mut q, b'\'', !conforming);
                    q.push('\'');
                }
                7 => {
                    q.push_str(g.pick(&["E'", "e'"]));
                    g.body(&mut q, b'\'', true);
                    q.push('\'');
                }
                8 => {
                    q.push_str(g.pick(&["B'", "X'", "N'", "U&'", "x'"]));
                    g.body(&mut q, b'\'', !conforming);
                    q.push('\'');
                }
                9 | 10 => {
                    let tag = g.pick(&["", "a", "tag", "a1", "_x", "é"]);
                    let delim = format!("${tag}$");
                    q.push_str(&delim);
                    let start = q.len();
                    g.body(&mut q, b'$', false);
                    // The body must not close the quote early.
                    while q[start..].contains(&delim) {
                        let at = start + q[start..].find(&delim).expect("found");
                        q.replace_range(at..at + 1, "Q");
                    }
                    q.push_str(&delim);
                }
                11 => {
                    q.push_str("--");
                    let start = q.len();
                    g.body(&mut q, b'-', false);
                    let body: String = q[start..].replace(['\n', '\r'], "Z");
                    q.replace_range(start.., &body);
                    q.push('\n');
                }
                12 => {
                    q.push_str("/*");
                    let start = q.len();
                    g.body(&mut q, b'*', false);
                    // Nested comments, balanced; a stray end is made harmless.
                    let body: String = q[start..].replace("*/", "*Z/").replace("/*", "/Z*");
                    q.replace_range(start.., &body);
                    if g.next() % 2 == 0 {
                        q.push_str(" /* Q /* Z */ ' */");
                    }
                    q.push_str(" */");
                }
                _ => {}
            }
            q.push_str(g.pick(&[" ", "\n", "\t", "\r\n", " , ", "("]));
        }
        let mut end = cut.min(q.len());
        while !q.is_char_boundary(end) {
            end -= 1;
        }
        q.truncate(end);
        q
    }

    struct Gen<'a> {
        e: &'a [u8],
        i: usize,
    }

    impl Gen<'_> {
        fn more(&self) -> bool {
            self.i < self.e.len()
        }

        fn next(&mut self) -> u8 {
            let v = self.e.get(self.i).copied().unwrap_or(0);
            self.i += 1;
            v
        }

        fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[usize::from(self.next()) % from.len()]
        }

        /// A literal's body: secrets and hard characters, `quote` escaped as the
        /// literal's rules require (doubled, or with `backslash` also `\'`).
        fn body(&mut self, q: &mut String, quote: u8, backslash: bool) {
            let n = self.next() % 12;
            for _ in 0..n {
                let c = self.pick(b"QZqz'\\$*/-\n\" ");
                match c {
                    b'\'' if quote == b'\'' => {
                        q.push_str(if backslash && self.next() % 2 == 0 {
                            "\\'"
                        } else {
                            "''"
                        });
                    }
                    b'\\' if quote == b'\'' && backslash => {
                        q.push_str(self.pick(&["\\\\", "\\n", "\\Q"]));
                    }
                    c => q.push(c as char),
                }
            }
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
            ("SELECT 'unclosed", "SELECT ?…"),
            ("SELECT $1::text, 'ü', 1e10", "SELECT $1::text, ?"),
            // `$` inside an identifier is part of it; U& strings are strings.
            ("SELECT a$b, x$1 FROM t$", "SELECT a$b, x$1 FROM t$"),
            ("SELECT U&'d\\0061t' FROM t", "SELECT ? FROM t"),
        ];
        for (sql, want) in cases {
            assert_eq!(fingerprint(sql, 1000), want, "{sql}");
        }
    }

    /// The review's three leaks (issue 15, D2), and their relatives: where the lexer
    /// cannot tell where a literal ends, nothing after its start is shown.
    #[test]
    fn fails_closed_where_a_literal_has_no_certain_end() {
        let cases = [
            // Comments nest: the quote inside the inner one is comment, not a string.
            (
                "SELECT /* x /* y */ ' */ 'card_4111111111111111' FROM t",
                "SELECT ? FROM t",
            ),
            // A dollar quote cut by track_activity_query_size.
            ("SELECT $b$ssn_123-45-6789 and more", "SELECT ?…"),
            ("SELECT $a1$ssn_123$a1$, 2", "SELECT ?"),
            ("SELECT $é$ssn_123", "SELECT ?…"),
            // Whether \' ends the string depends on standard_conforming_strings.
            (r"SELECT 'C:\' AS dir, 'pw_secret'", "SELECT ?…"),
            (r"SELECT 'x\' || 'pw_secret' || '", "SELECT ?…"),
            // Both readings agree: nothing to drop.
            (r"SELECT 'a\\' AS dir, 7", "SELECT ? AS dir, ?"),
            // E'…' always takes backslash escapes.
            (r"SELECT E'it\'s', 7", "SELECT ?"),
            // A number right before a dollar quote ends the number.
            ("SELECT 1$q$secret$q$", "SELECT ??"),
            // A line comment ends at a carriage return too.
            ("SELECT 1 -- c\r'secret\n more'", "SELECT ? ?"),
            // An unclosed comment hides the rest.
            ("SELECT 1 /* a /* b */ 'secret'", "SELECT ?"),
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
            "U&",
            "U&'",
            "/*",
            "/*/",
            "*/",
            "--",
            "\u{0}\u{ffff}",
            "é'é",
            "$$$$",
            "1.2.3e",
            ".",
        ] {
            let _ = fingerprint(sql, 5);
        }
    }

    /// No byte from inside a literal or comment ever reaches the fingerprint, for
    /// queries built from every kind of token under both settings of
    /// `standard_conforming_strings` and cut anywhere (the fuzz target `query_fingerprint`
    /// checks the same property on inputs it chooses).
    #[test]
    fn no_literal_byte_reaches_the_fingerprint() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let entropy: Vec<u8> = (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let sql = super::generated::query(&entropy);
            let fp = fingerprint(&sql, 4096);
            assert!(
                !fp.bytes().any(|c| super::generated::SECRET.contains(&c)),
                "{sql:?} -> {fp:?}"
            );
        }
    }
}
