//! Reading the CRI log format back: `<RFC 3339 timestamp> <stdout|stderr> <P|F> <content>`,
//! one record per line (written by `berth_containerd::logio`). `P` records are parts of a
//! line that continues in the next record of the same stream; `F` ends it.

/// One parsed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The timestamp as written.
    pub timestamp: &'a str,
    /// `stdout` or `stderr`.
    pub stream: Stream,
    /// True for a `P` (partial) record.
    pub partial: bool,
    /// The content, without the record's newline.
    pub content: &'a str,
}

/// The stream of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

/// Why a line is not a CRI log record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A field is missing.
    #[error("a CRI log record needs 4 space-separated fields, this one has {found}")]
    Fields {
        /// How many were found.
        found: usize,
    },
    /// The stream is neither stdout nor stderr.
    #[error("unknown stream {0:?}")]
    Stream(String),
    /// The tag is neither P nor F.
    #[error("unknown tag {0:?} (expected P or F)")]
    Tag(String),
    /// The timestamp is not RFC 3339 with a UTC `Z` or an offset.
    #[error("bad timestamp {0:?}")]
    Timestamp(String),
}

/// Parses one record (a line without its trailing newline).
pub fn parse(line: &str) -> Result<Record<'_>, ParseError> {
    let mut parts = line.splitn(4, ' ');
    let timestamp = parts.next().unwrap_or_default();
    let stream = parts.next();
    let tag = parts.next();
    let content = parts.next();
    let (Some(stream), Some(tag), Some(content)) = (stream, tag, content) else {
        return Err(ParseError::Fields {
            found: line.splitn(4, ' ').count(),
        });
    };
    if !is_rfc3339(timestamp) {
        return Err(ParseError::Timestamp(timestamp.to_owned()));
    }
    let stream = match stream {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        other => return Err(ParseError::Stream(other.to_owned())),
    };
    let partial = match tag {
        "P" => true,
        "F" => false,
        other => return Err(ParseError::Tag(other.to_owned())),
    };
    Ok(Record {
        timestamp,
        stream,
        partial,
        content,
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z'] => true,
        [sign, h1, h2, b':', m1, m2] if (*sign == b'+' || *sign == b'-') => {
            [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit())
        }
        _ => false,
    }
}

/// Joins records into the lines the container wrote: `P` records are concatenated with the
/// following records of the same stream up to an `F`. Returns `(stream, timestamp of the
/// first part, line)`; a trailing unfinished line is returned as well. Malformed lines are
/// skipped and counted.
pub fn join(text: &str) -> (Vec<(Stream, String, String)>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    let mut open: [Option<(String, String)>; 2] = [None, None];
    for line in text.lines() {
        let Ok(r) = parse(line) else {
            bad += 1;
            continue;
        };
        let slot = &mut open[r.stream as usize];
        let (ts, mut content) = slot
            .take()
            .unwrap_or_else(|| (r.timestamp.to_owned(), String::new()));
        content.push_str(r.content);
        if r.partial {
            *slot = Some((ts, content));
        } else {
            out.push((r.stream, ts, content));
        }
    }
    for (i, slot) in open.into_iter().enumerate() {
        if let Some((ts, content)) = slot {
            let stream = if i == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            out.push((stream, ts, content));
        }
    }
    (out, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records() {
        let r = parse("2024-01-02T03:04:05.123456789Z stdout F hello world").unwrap();
        assert_eq!(r.stream, Stream::Stdout);
        assert!(!r.partial);
        assert_eq!(r.content, "hello world");
        let r = parse("2024-01-02T03:04:05Z stderr P ").unwrap();
        assert!(r.partial);
        assert_eq!(r.content, "");
        assert!(is_rfc3339("2024-01-02T03:04:05.1+02:00"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(parse("hello"), Err(ParseError::Fields { .. })));
        assert!(matches!(
            parse("2024-01-02T03:04:05Z stdin F x"),
            Err(ParseError::Stream(_))
        ));
        assert!(matches!(
            parse("2024-01-02T03:04:05Z stdout X x"),
            Err(ParseError::Tag(_))
        ));
        assert!(matches!(
            parse("yesterday stdout F x"),
            Err(ParseError::Timestamp(_))
        ));
        assert!(!is_rfc3339("2024-01-02T03:04:05."));
    }

    #[test]
    fn joins_partials_per_stream() {
        let text = "2024-01-02T03:04:05Z stdout P ab\n\
                    2024-01-02T03:04:05Z stderr F err\n\
                    2024-01-02T03:04:06Z stdout F cd\n\
                    garbage\n\
                    2024-01-02T03:04:07Z stdout P tail\n";
        let (lines, bad) = join(text);
        assert_eq!(bad, 1);
        let got: Vec<(Stream, &str)> = lines.iter().map(|(s, _, l)| (*s, l.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Stream::Stderr, "err"),
                (Stream::Stdout, "abcd"),
                (Stream::Stdout, "tail")
            ]
        );
        assert_eq!(
            lines[1].1, "2024-01-02T03:04:05Z",
            "a joined line keeps its first time"
        );
    }
}
