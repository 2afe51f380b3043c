//! RESP2, the Redis wire protocol: enough of it for a load generator.
//!
//! Commands go out as arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$5\r\nkey:7\r\n`).
//! Replies are parsed in place from the read buffer: [`parse`] returns a [`Reply`]
//! borrowing from it and how many bytes it took, `None` while the reply is still
//! incomplete, or a [`RespError`] when the bytes cannot be RESP (the connection is
//! then unusable: there is no way to find the next reply).

/// Redis' own limit on one bulk string (`proto-max-bulk-len`, 512 MiB).
const MAX_BULK: i64 = 512 << 20;
/// Most elements of one array; bounds what a garbage header can make us loop over.
const MAX_ARRAY: i64 = 1 << 20;
/// Deepest nesting of arrays; bounds the recursion.
const MAX_DEPTH: usize = 8;
/// Longest line (type byte to CRLF) of a simple string, error or header.
const MAX_LINE: usize = 64 << 10;

/// One reply, borrowing from the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply<'a> {
    /// `+OK`
    Simple(&'a [u8]),
    /// `-ERR ...`
    Error(&'a [u8]),
    /// `:42`
    Integer(i64),
    /// `$5\r\nhello` or the null bulk string `$-1` (GET of a missing key).
    Bulk(Option<&'a [u8]>),
    /// `*2\r\n...` or the null array `*-1`.
    Array(Option<Vec<Reply<'a>>>),
}

/// Bytes that are not RESP2. Small and plain: it is on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RespError {
    /// The first byte of a reply is not one of `+ - : $ *`.
    UnknownType(u8),
    /// A length or integer line is not a decimal 64-bit integer.
    BadInteger,
    /// A bulk or array length below -1 or above the limits.
    BadLength(i64),
    /// A CR not followed by LF, or a bulk string not followed by CRLF.
    MissingCrlf,
    /// A line longer than [`MAX_LINE`].
    LineTooLong,
    /// Arrays nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl std::fmt::Display for RespError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownType(b) => write!(f, "unknown RESP type byte 0x{b:02x}"),
            Self::BadInteger => f.write_str("bad RESP integer"),
            Self::BadLength(n) => write!(f, "bad RESP length {n}"),
            Self::MissingCrlf => f.write_str("RESP line not ended by CRLF"),
            Self::LineTooLong => write!(f, "RESP line longer than {MAX_LINE} bytes"),
            Self::TooDeep => write!(f, "RESP arrays nested deeper than {MAX_DEPTH}"),
        }
    }
}

impl std::error::Error for RespError {}

/// Appends the header of a command of `args` arguments.
pub(crate) fn array_header(args: usize, out: &mut Vec<u8>) {
    out.push(b'*');
    push_decimal(args as u64, out);
    out.extend_from_slice(b"\r\n");
}

/// Appends one argument (a bulk string).
pub(crate) fn bulk(arg: &[u8], out: &mut Vec<u8>) {
    out.push(b'$');
    push_decimal(arg.len() as u64, out);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// Appends a whole command.
pub(crate) fn command(args: &[&[u8]], out: &mut Vec<u8>) {
    array_header(args.len(), out);
    for a in args {
        bulk(a, out);
    }
}

/// Appends `n` in decimal (what `write!` does, without the formatting machinery on the
/// hot path).
pub(crate) fn push_decimal(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        // n % 10 < 10: the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let d = (n % 10) as u8;
        digits[i] = b'0' + d;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Parses one reply from the start of `buf`: the reply and the number of bytes it
/// took, or `None` if `buf` holds only part of it.
///
/// # Errors
/// [`RespError`] when `buf` does not start with a RESP2 reply.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, RespError> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Reply<'_>, usize)>, RespError> {
    let Some(&tag) = buf.get(pos) else {
        return Ok(None);
    };
    if !matches!(tag, b'+' | b'-' | b':' | b'$' | b'*') {
        return Err(RespError::UnknownType(tag));
    }
    let start = pos + 1;
    let Some(cr) = line_end(buf, start)? else {
        return Ok(None);
    };
    let line = &buf[start..cr];
    let next = cr + 2;
    let reply = match tag {
        b'+' => (Reply::Simple(line), next),
        b'-' => (Reply::Error(line), next),
        b':' => (Reply::Integer(integer(line)?), next),
        b'$' => match integer(line)? {
            -1 => (Reply::Bulk(None), next),
            n if !(0..=MAX_BULK).contains(&n) => return Err(RespError::BadLength(n)),
            n => {
                let n = usize::try_from(n).map_err(|_| RespError::BadLength(n))?;
                let end = next + n;
                let Some(crlf) = buf.get(end..end + 2) else {
                    return Ok(None);
                };
                if crlf != b"\r\n" {
                    return Err(RespError::MissingCrlf);
                }
                (Reply::Bulk(Some(&buf[next..end])), end + 2)
            }
        },
        _ => match integer(line)? {
            -1 => (Reply::Array(None), next),
            n if !(0..=MAX_ARRAY).contains(&n) => return Err(RespError::BadLength(n)),
            n => {
                if depth >= MAX_DEPTH {
                    return Err(RespError::TooDeep);
                }
                let n = usize::try_from(n).map_err(|_| RespError::BadLength(n))?;
                // Never trust a length from the wire for an allocation.
                let mut items = Vec::with_capacity(n.min(64));
                let mut at = next;
                for _ in 0..n {
                    let Some((item, after)) = parse_at(buf, at, depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(item);
                    at = after;
                }
                (Reply::Array(Some(items)), at)
            }
        },
    };
    Ok(Some(reply))
}

/// The index of the CR ending the line that starts at `start`; `None` while the line
/// is incomplete.
fn line_end(buf: &[u8], start: usize) -> Result<Option<usize>, RespError> {
    let rest = buf.get(start..).unwrap_or_default();
    let window = &rest[..rest.len().min(MAX_LINE + 1)];
    match window.iter().position(|&b| b == b'\r') {
        Some(i) => match rest.get(i + 1) {
            Some(b'\n') => Ok(Some(start + i)),
            Some(_) => Err(RespError::MissingCrlf),
            None => Ok(None),
        },
        None if window.len() > MAX_LINE => Err(RespError::LineTooLong),
        None => Ok(None),
    }
}

fn integer(line: &[u8]) -> Result<i64, RespError> {
    let (negative, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() {
        return Err(RespError::BadInteger);
    }
    let mut n: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(RespError::BadInteger);
        }
        let d = i64::from(b - b'0');
        n = n
            .checked_mul(10)
            .and_then(|n| {
                if negative {
                    n.checked_sub(d)
                } else {
                    n.checked_add(d)
                }
            })
            .ok_or(RespError::BadInteger)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn whole(bytes: &[u8]) -> Reply<'_> {
        let (reply, used) = parse(bytes).expect("valid").expect("complete");
        assert_eq!(used, bytes.len(), "{bytes:?}");
        reply
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        command(&[b"GET", b"key:7"], &mut out);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$5\r\nkey:7\r\n");
        out.clear();
        command(&[b"SET", b"k", b""], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        out.clear();
        for n in [0, 7, 10, 1234, u64::MAX] {
            out.clear();
            push_decimal(n, &mut out);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn replies() {
        assert_eq!(whole(b"+OK\r\n"), Reply::Simple(b"OK"));
        assert_eq!(
            whole(b"-ERR unknown command\r\n"),
            Reply::Error(b"ERR unknown command")
        );
        assert_eq!(whole(b":-42\r\n"), Reply::Integer(-42));
        assert_eq!(whole(b"$5\r\nhello\r\n"), Reply::Bulk(Some(b"hello")));
        assert_eq!(whole(b"$0\r\n\r\n"), Reply::Bulk(Some(b"")));
        // A value may hold CR and LF: the length, not the line, delimits it.
        assert_eq!(whole(b"$4\r\na\r\nb\r\n"), Reply::Bulk(Some(b"a\r\nb")));
        assert_eq!(whole(b"$-1\r\n"), Reply::Bulk(None));
        assert_eq!(whole(b"*-1\r\n"), Reply::Array(None));
        assert_eq!(
            whole(b"*3\r\n:1\r\n$-1\r\n*1\r\n+x\r\n"),
            Reply::Array(Some(vec![
                Reply::Integer(1),
                Reply::Bulk(None),
                Reply::Array(Some(vec![Reply::Simple(b"x")])),
            ]))
        );
    }

    #[test]
    fn pipelined_replies_parse_one_after_another() {
        let buf = b"+OK\r\n$3\r\nabc\r\n$-1\r\n:7\r\n";
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((r, used)) = parse(&buf[at..]).expect("valid") {
            got.push(r);
            at += used;
        }
        assert_eq!(at, buf.len());
        assert_eq!(
            got,
            [
                Reply::Simple(b"OK"),
                Reply::Bulk(Some(b"abc")),
                Reply::Bulk(None),
                Reply::Integer(7)
            ]
        );
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete() {
        let full: &[u8] = b"*2\r\n$5\r\nhello\r\n-ERR x\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse(full).expect("valid").is_some());
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(parse(b"hello\r\n"), Err(RespError::UnknownType(b'h')));
        assert_eq!(parse(b":12a\r\n"), Err(RespError::BadInteger));
        assert_eq!(parse(b":\r\n"), Err(RespError::BadInteger));
        assert_eq!(
            parse(b":99999999999999999999\r\n"),
            Err(RespError::BadInteger)
        );
        assert_eq!(parse(b"$-2\r\n"), Err(RespError::BadLength(-2)));
        assert_eq!(
            parse(b"$1000000000000\r\n"),
            Err(RespError::BadLength(1_000_000_000_000))
        );
        assert_eq!(parse(b"*-5\r\n"), Err(RespError::BadLength(-5)));
        assert_eq!(parse(b"+OK\rX"), Err(RespError::MissingCrlf));
        assert_eq!(parse(b"$2\r\nabXY"), Err(RespError::MissingCrlf));
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert_eq!(parse(deep.as_bytes()), Err(RespError::TooDeep));
        let long = vec![b'+'; MAX_LINE + 10];
        assert_eq!(parse(&long), Err(RespError::LineTooLong));
        // Huge declared sizes allocate nothing: the data is simply incomplete.
        assert_eq!(parse(b"*1048576\r\n"), Ok(None));
        assert_eq!(parse(b"$536870912\r\n"), Ok(None));
    }

    fn arb_reply() -> impl Strategy<Value = Vec<u8>> {
        // Encoded replies, nested up to three levels.
        let leaf = prop_oneof![
            "[a-zA-Z0-9 ]{0,20}".prop_map(|s| format!("+{s}\r\n").into_bytes()),
            "[a-zA-Z0-9 ]{0,20}".prop_map(|s| format!("-{s}\r\n").into_bytes()),
            any::<i64>().prop_map(|n| format!(":{n}\r\n").into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|v| {
                let mut out = Vec::new();
                bulk(&v, &mut out);
                out
            }),
            Just(b"$-1\r\n".to_vec()),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            proptest::collection::vec(inner, 0..4).prop_map(|items| {
                let mut out = Vec::new();
                array_header(items.len(), &mut out);
                for i in items {
                    out.extend_from_slice(&i);
                }
                out
            })
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn valid_replies_parse_whole_and_prefixes_are_incomplete(reply in arb_reply()) {
            let (_, used) = parse(&reply).expect("valid").expect("complete");
            prop_assert_eq!(used, reply.len());
            for cut in 0..reply.len() {
                prop_assert_eq!(parse(&reply[..cut]), Ok(None));
            }
        }

        #[test]
        fn commands_round_trip(args in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..40), 1..6)
        ) {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let mut out = Vec::new();
            command(&refs, &mut out);
            let (reply, used) = parse(&out).expect("valid").expect("complete");
            prop_assert_eq!(used, out.len());
            let expected: Vec<Reply<'_>> = refs.iter().map(|a| Reply::Bulk(Some(a))).collect();
            prop_assert_eq!(reply, Reply::Array(Some(expected)));
        }
    }
}
