//! The `app_line` target: the application protocol's reader and parsers
//! (`sesco_proto::app`), on what an application (or an Lrmd) may send.
//!
//! # Input
//!
//! `[chunk] [bytes]`: the bytes are one stream of lines; `chunk` (1–17) is how many bytes
//! each read hands out, so lines arrive split anywhere.
//!
//! # Checks
//!
//! - no panic;
//! - the bounded reader agrees line by line with an independent split of the bytes on
//!   newlines: a line over `MAX_LINE_BYTES` is reported as too long (and never held), a
//!   last line without a newline is still a line, and the stream ends once;
//! - every line either parses or is refused with one of the documented codes, and a line
//!   over the limit is refused as `bad_line`;
//! - a parsed line re-encodes to one line within the limit (when its numbers allow) that
//!   parses back to the same message; an application's parser refuses Lrmd's types and
//!   the other way round.

use std::sync::OnceLock;

use sesco_proto::app::{self, MAX_LINE_BYTES, ReadLine};

const CODES: &[&str] = &["bad_line", "unknown_type", "invalid"];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

/// The lines of `bytes` as the reader must see them.
fn expected(bytes: &[u8]) -> Vec<ReadLine> {
    let mut out = Vec::new();
    let mut pieces: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // After a final newline, split leaves an empty piece that is no line.
    if pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    for piece in pieces {
        out.push(if piece.len() > MAX_LINE_BYTES {
            ReadLine::TooLong
        } else {
            ReadLine::Line(piece.to_vec())
        });
    }
    out.push(ReadLine::End);
    out
}

fn check_line(line: &[u8]) {
    match app::parse_app_line(line) {
        Ok(parsed) => {
            let encoded = app::encode_line(&parsed);
            assert_eq!(encoded.last(), Some(&b'\n'));
            let body = &encoded[..encoded.len() - 1];
            assert!(!body.contains(&b'\n'), "an encoded line holds no newline");
            if body.len() <= MAX_LINE_BYTES {
                assert_eq!(app::parse_app_line(body).as_ref(), Ok(&parsed));
            }
            assert!(
                !matches!(app::parse_lrmd_line(line), Ok(Some(_))),
                "a line is an application's or Lrmd's, not both"
            );
        }
        Err(e) => {
            assert!(CODES.contains(&e.code()), "{e}");
            assert!(!e.to_string().is_empty());
            if line.len() > MAX_LINE_BYTES {
                assert_eq!(e, app::LineError::TooLong);
            }
        }
    }
    match app::parse_lrmd_line(line) {
        Ok(Some(parsed)) => {
            let encoded = app::encode_line(&parsed);
            let body = &encoded[..encoded.len() - 1];
            if body.len() <= MAX_LINE_BYTES {
                assert_eq!(app::parse_lrmd_line(body), Ok(Some(parsed)));
            }
        }
        Ok(None) => {}
        Err(e) => assert!(CODES.contains(&e.code()), "{e}"),
    }
}

pub fn check(data: &[u8]) {
    let Some((&chunk, bytes)) = data.split_first() else {
        return;
    };
    let chunk = 1 + (chunk as usize % 17);
    let want = expected(bytes);
    let got = runtime().block_on(async {
        let mut reader = tokio::io::BufReader::with_capacity(chunk, bytes);
        let mut got = Vec::new();
        loop {
            let line = app::read_bounded_line(&mut reader)
                .await
                .expect("reading a slice cannot fail");
            let end = line == ReadLine::End;
            got.push(line);
            if end || got.len() > want.len() {
                return got;
            }
        }
    });
    assert_eq!(got, want);
    for line in &got {
        if let ReadLine::Line(line) = line {
            assert!(line.len() <= MAX_LINE_BYTES);
            check_line(line);
        }
    }
    // The whole input as one line, however long.
    check_line(bytes);
}
