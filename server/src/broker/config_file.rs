//! The syntax of nats-server configuration files, enough to read the subset [`super::BrokerConfig`] supports.
//!
//! - comments: `#` and `//` to the end of the line;
//! - `key: value`, `key = value` and `key value`; entries separated by newlines, `;` or `,`;
//! - maps `{ ... }` (also `key { ... }` without a separator), arrays `[ ... ]`;
//! - values: `"double"` (with `\"`, `\\`, `\n`, `\t` escapes) or `'single'` quoted strings, and bare words
//!   (numbers, sizes such as `1MB`, durations, `host:port`).
//!
//! Variables (`$NAME`) and `include` are not supported and are refused by name. Keys are case-insensitive
//! (lowercased here), as in nats-server.

/// A `key value` pair.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// The key, lowercased.
    pub(crate) key: String,
    /// The value.
    pub(crate) value: Value,
    /// 1-based line of the key.
    pub(crate) line: usize,
}

/// A value: text is interpreted by the key that owns it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A bare word or a quoted string.
    Text {
        /// The text (unescaped for quoted strings).
        text: String,
        /// It was quoted.
        quoted: bool,
    },
    /// `{ ... }`.
    Map(Vec<Entry>),
    /// `[ ... ]`.
    Array(Vec<Value>),
}

/// A syntax error with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// 1-based line.
    pub(crate) line: usize,
    /// What is wrong.
    pub(crate) message: String,
}

/// Parses a whole file into its top-level entries.
pub(crate) fn parse(text: &str) -> Result<Vec<Entry>, SyntaxError> {
    let mut parser = Parser {
        src: text,
        pos: 0,
        line: 1,
    };
    parser.entries(false)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
}

fn ends_bare_word(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\r' | b'\n' | b',' | b';' | b'}' | b']' | b'#'
    )
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.src.as_bytes().get(self.pos + offset).copied()
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            line: self.line,
            message: message.into(),
        })
    }

    fn bump(&mut self) {
        if self.peek() == Some(b'\n') {
            self.line += 1;
        }
        self.pos += 1;
    }

    fn skip_comment(&mut self) -> bool {
        let starts = self.peek() == Some(b'#')
            || (self.peek() == Some(b'/') && self.peek_at(1) == Some(b'/'));
        if starts {
            while self.peek().is_some_and(|b| b != b'\n') {
                self.bump();
            }
        }
        starts
    }

    /// Skips spaces and comments, and also newlines and separators when `lines` is set.
    fn skip(&mut self, lines: bool) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r') => self.bump(),
                Some(b'\n' | b',' | b';') if lines => self.bump(),
                Some(b'#' | b'/') => {
                    if !self.skip_comment() {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    fn entries(&mut self, in_map: bool) -> Result<Vec<Entry>, SyntaxError> {
        let mut entries = Vec::new();
        loop {
            self.skip(true);
            match self.peek() {
                None if in_map => return self.error("unclosed '{'"),
                None => return Ok(entries),
                Some(b'}') if in_map => {
                    self.bump();
                    return Ok(entries);
                }
                Some(b'}') => return self.error("unexpected '}'"),
                Some(_) => entries.push(self.entry()?),
            }
        }
    }

    fn entry(&mut self) -> Result<Entry, SyntaxError> {
        let line = self.line;
        let key = match self.peek() {
            Some(q @ (b'"' | b'\'')) => self.quoted(q)?,
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|b| {
                    !ends_bare_word(b) && !matches!(b, b':' | b'=' | b'{' | b'[' | b'"' | b'\'')
                }) {
                    self.bump();
                }
                self.src
                    .get(start..self.pos)
                    .unwrap_or_default()
                    .to_string()
            }
        };
        if key.is_empty() {
            return self.error(format!(
                "expected a key, found '{}'",
                self.peek().map(char::from).unwrap_or(' ')
            ));
        }
        if key.eq_ignore_ascii_case("include") {
            return self.error("`include` is not supported by the embedded broker");
        }
        self.skip(false);
        if matches!(self.peek(), Some(b':' | b'=')) {
            self.bump();
            self.skip(false);
        }
        match self.peek() {
            None | Some(b'\n' | b',' | b';' | b'}') => {
                return self.error(format!("key `{key}` has no value"));
            }
            _ => {}
        }
        let value = self.value()?;
        Ok(Entry {
            key: key.to_ascii_lowercase(),
            value,
            line,
        })
    }

    fn value(&mut self) -> Result<Value, SyntaxError> {
        match self.peek() {
            Some(b'{') => {
                self.bump();
                Ok(Value::Map(self.entries(true)?))
            }
            Some(b'[') => {
                self.bump();
                let mut items = Vec::new();
                loop {
                    self.skip(true);
                    match self.peek() {
                        None => return self.error("unclosed '['"),
                        Some(b']') => {
                            self.bump();
                            return Ok(Value::Array(items));
                        }
                        Some(_) => items.push(self.value()?),
                    }
                }
            }
            Some(q @ (b'"' | b'\'')) => Ok(Value::Text {
                text: self.quoted(q)?,
                quoted: true,
            }),
            Some(b'$') => self.error("variables ($NAME) are not supported by the embedded broker"),
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|b| !ends_bare_word(b)) {
                    self.bump();
                }
                let text = self.src.get(start..self.pos).unwrap_or_default();
                if text.is_empty() {
                    return self.error("expected a value");
                }
                Ok(Value::Text {
                    text: text.to_string(),
                    quoted: false,
                })
            }
        }
    }

    fn quoted(&mut self, quote: u8) -> Result<String, SyntaxError> {
        let line = self.line;
        self.bump();
        let mut out = String::new();
        loop {
            let start = self.pos;
            while self
                .peek()
                .is_some_and(|b| b != quote && b != b'\n' && !(quote == b'"' && b == b'\\'))
            {
                self.bump();
            }
            out.push_str(self.src.get(start..self.pos).unwrap_or_default());
            match self.peek() {
                Some(b) if b == quote => {
                    self.bump();
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.bump();
                    match self.peek() {
                        Some(b'n') => out.push('\n'),
                        Some(b't') => out.push('\t'),
                        Some(b'r') => out.push('\r'),
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        _ => return self.error("unknown escape in a quoted string"),
                    }
                    self.bump();
                }
                _ => {
                    return Err(SyntaxError {
                        line,
                        message: "unterminated quoted string".into(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> Value {
        Value::Text {
            text: t.into(),
            quoted: false,
        }
    }

    #[test]
    fn separators_comments_and_nesting() {
        let entries = parse(
            "# comment\nlisten: 127.0.0.1:4222 // trailing\nport = 4333; host 0.0.0.0\n\
             authorization {\n  user: \"a b\"\n  password: 'p#\\w'\n}\nMAX_PAYLOAD: 1MB\nlist: [1, 2\n 3]\n",
        )
        .unwrap();
        let keys: Vec<_> = entries.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert_eq!(
            keys,
            [
                ("listen", 2),
                ("port", 3),
                ("host", 3),
                ("authorization", 4),
                ("max_payload", 8),
                ("list", 9)
            ]
        );
        assert_eq!(entries[0].value, text("127.0.0.1:4222"));
        assert_eq!(entries[1].value, text("4333"));
        let Value::Map(auth) = &entries[3].value else {
            panic!()
        };
        assert_eq!(
            auth[0].value,
            Value::Text {
                text: "a b".into(),
                quoted: true
            }
        );
        assert_eq!(
            auth[1].value,
            Value::Text {
                text: "p#\\w".into(),
                quoted: true
            }
        );
        assert_eq!(
            entries[5].value,
            Value::Array(vec![text("1"), text("2"), text("3")])
        );
    }

    #[test]
    fn map_with_separator_and_escapes() {
        let entries = parse("a: { b = \"x\\\"y\" }, c: {}").unwrap();
        assert_eq!(
            entries[0].value,
            Value::Map(vec![Entry {
                key: "b".into(),
                value: Value::Text {
                    text: "x\"y".into(),
                    quoted: true
                },
                line: 1
            }])
        );
        assert_eq!(entries[1].value, Value::Map(vec![]));
    }

    #[test]
    fn errors_name_the_line() {
        let err = |s: &str| parse(s).unwrap_err();
        assert_eq!(err("a {\n b: 1\n").message, "unclosed '{'");
        assert_eq!(err("a: \"x\n").line, 1);
        assert_eq!(err("\n\nport:\n").line, 3);
        assert!(err("include other.conf").message.contains("include"));
        assert!(err("token: $TOKEN").message.contains("variables"));
        assert_eq!(err("}").message, "unexpected '}'");
        assert_eq!(err("a: [1, 2").message, "unclosed '['");
    }

    #[test]
    fn never_panics_on_odd_input() {
        for input in [
            "", "\"", "'", "{", "[", ":", "a:", "a: {", "a: [", "/", "a /", "é: ü", "a: \"\\",
            "a b c d",
        ] {
            let _ = parse(input);
        }
    }
}
