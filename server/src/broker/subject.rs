//! Subject rules of the NATS client protocol: tokens, wildcards and matching.
//!
//! A subject is a `.`-separated list of tokens. In a subscription, the token `*` matches exactly one token and
//! `>` (only as the last token) matches one or more. Subjects on the wire are bytes; nothing here assumes UTF-8.

/// Why a subject was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// The subject is empty.
    #[error("empty subject")]
    Empty,
    /// Two dots in a row, or a dot at either end.
    #[error("empty token")]
    EmptyToken,
    /// `>` somewhere other than the last token.
    #[error("'>' must be the last token")]
    FullWildcardNotLast,
    /// `*` or `>` inside a longer token (refused in pedantic mode; otherwise such tokens are literals).
    #[error("wildcards must be whole tokens")]
    PartialWildcard,
    /// A wildcard in a subject that is published to (refused in pedantic mode and for in-process publishes).
    #[error("wildcards are not allowed in a publish subject")]
    WildcardInPublish,
    /// Whitespace or a control character inside the subject.
    #[error("contains whitespace or control characters")]
    Whitespace,
}

/// The tokens of `subject`, in order.
pub fn tokens(subject: &[u8]) -> impl Iterator<Item = &[u8]> {
    subject.split(|&b| b == b'.')
}

fn check_common(subject: &[u8]) -> Result<(), SubjectError> {
    if subject.is_empty() {
        return Err(SubjectError::Empty);
    }
    if subject.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(SubjectError::Whitespace);
    }
    if tokens(subject).any(<[u8]>::is_empty) {
        return Err(SubjectError::EmptyToken);
    }
    Ok(())
}

/// Checks a subscription subject (wildcards allowed). With `strict` (pedantic clients and in-process callers),
/// `*` and `>` must also be whole tokens; otherwise a token like `a*` is an ordinary literal, as in nats-server.
pub fn check_filter(subject: &[u8], strict: bool) -> Result<(), SubjectError> {
    check_common(subject)?;
    let mut iter = tokens(subject).peekable();
    while let Some(token) = iter.next() {
        if token == b">" && iter.peek().is_some() {
            return Err(SubjectError::FullWildcardNotLast);
        }
        if strict && token.len() > 1 && token.iter().any(|&b| b == b'*' || b == b'>') {
            return Err(SubjectError::PartialWildcard);
        }
    }
    Ok(())
}

/// Checks a subject that is published to: no empty tokens, and with `strict` (pedantic clients) no `*` or `>`
/// token, as nats-server's `IsValidLiteralSubject` (a token like `a*` is a literal).
pub fn check_publish(subject: &[u8], strict: bool) -> Result<(), SubjectError> {
    check_common(subject)?;
    if strict && tokens(subject).any(|t| t == b"*" || t == b">") {
        return Err(SubjectError::WildcardInPublish);
    }
    Ok(())
}

/// Checks a subject an in-process caller publishes to: [`check_filter`] and [`check_publish`], both strict. The
/// common case — plain tokens, no wildcard or control characters — is settled in one pass over the bytes; anything
/// else takes the two full checks, so the error is exactly theirs.
pub fn check_in_process_publish(subject: &[u8]) -> Result<(), SubjectError> {
    if is_plain_literal(subject) {
        return Ok(());
    }
    check_filter(subject, true).and_then(|()| check_publish(subject, true))
}

/// Non-empty, no empty token, and no byte that is whitespace, a control character, `*` or `>`.
fn is_plain_literal(subject: &[u8]) -> bool {
    let mut token_len = 0usize;
    for &b in subject {
        if b <= b' ' || b == 0x7f || b == b'*' || b == b'>' {
            return false;
        }
        if b == b'.' {
            if token_len == 0 {
                return false;
            }
            token_len = 0;
        } else {
            token_len += 1;
        }
    }
    token_len > 0
}

/// Whether the literal `subject` is matched by the subscription `pattern` (`*` one token, `>` the rest).
/// A publish subject with empty tokens matches nothing.
pub fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    let mut subject_tokens = tokens(subject);
    let mut pattern_tokens = tokens(pattern).peekable();
    loop {
        match (pattern_tokens.next(), subject_tokens.next()) {
            (None, None) => return true,
            (Some(b">"), Some(token)) if pattern_tokens.peek().is_none() => {
                return !token.is_empty() && subject_tokens.all(|t| !t.is_empty());
            }
            (Some(p), Some(s)) => {
                if s.is_empty() || (p != b"*" && p != s) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_process_publish_check_agrees_with_the_full_checks() {
        let cases: &[&[u8]] = &[
            b"a",
            b"a.b.c",
            b"foo-bar_baz.1",
            b"",
            b".",
            b"a.",
            b".a",
            b"a..b",
            b"a b",
            b"a\tb",
            b"a.*",
            b"*",
            b">",
            b"a.>",
            b"a.>.b",
            b"a*",
            b"a.b>",
            b"a\x7f",
            b"\xff.\xfe",
        ];
        for &case in cases {
            let full = check_filter(case, true).and_then(|()| check_publish(case, true));
            assert_eq!(
                check_in_process_publish(case),
                full,
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn filters() {
        for ok in [
            "a",
            "a.b.c",
            "a.*.c",
            "a.>",
            ">",
            "*",
            "foo-bar_baz.1",
            "*.*.>",
        ] {
            assert_eq!(check_filter(ok.as_bytes(), true), Ok(()), "{ok}");
        }
        assert_eq!(check_filter(b"", false), Err(SubjectError::Empty));
        assert_eq!(check_filter(b"a..b", false), Err(SubjectError::EmptyToken));
        assert_eq!(check_filter(b".a", false), Err(SubjectError::EmptyToken));
        assert_eq!(check_filter(b"a.", false), Err(SubjectError::EmptyToken));
        assert_eq!(
            check_filter(b"a.>.b", false),
            Err(SubjectError::FullWildcardNotLast)
        );
        assert_eq!(check_filter(b"a b", false), Err(SubjectError::Whitespace));
        assert_eq!(check_filter(b"a*.b", false), Ok(()));
        assert_eq!(
            check_filter(b"a*.b", true),
            Err(SubjectError::PartialWildcard)
        );
        assert_eq!(
            check_filter(b"a.b>", true),
            Err(SubjectError::PartialWildcard)
        );
    }

    #[test]
    fn publish_subjects() {
        assert_eq!(check_publish(b"a.b", true), Ok(()));
        assert_eq!(check_publish(b"a.*", false), Ok(()));
        assert_eq!(
            check_publish(b"a.*", true),
            Err(SubjectError::WildcardInPublish)
        );
        assert_eq!(
            check_publish(b"a.>", true),
            Err(SubjectError::WildcardInPublish)
        );
        assert_eq!(check_publish(b"a..b", false), Err(SubjectError::EmptyToken));
        assert_eq!(check_publish(b"a*.b>", true), Ok(()));
    }

    #[test]
    fn matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("a", "a", true),
            ("a", "b", false),
            ("a.b", "a.b", true),
            ("a.b", "a", false),
            ("a", "a.b", false),
            ("*", "a", true),
            ("*", "a.b", false),
            ("a.*", "a.b", true),
            ("a.*", "a", false),
            ("a.*", "a.b.c", false),
            ("*.b", "a.b", true),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.b.d", false),
            (">", "a", true),
            (">", "a.b.c", true),
            ("a.>", "a", false),
            ("a.>", "a.b", true),
            ("a.>", "a.b.c", true),
            ("a.>", "b.c", false),
            ("*.>", "a.b", true),
            ("*.>", "a", false),
            ("a.b", "a..b", false),
            (">", "a..b", false),
            ("a.*", "a.", false),
        ];
        for (pattern, subject, expected) in cases {
            assert_eq!(
                matches(pattern.as_bytes(), subject.as_bytes()),
                *expected,
                "{pattern} vs {subject}"
            );
        }
    }
}
