//! The fast path: one forward pass over a flat order.
//!
//! Nearly every message is a flat object of strings, numbers and `null`
//! without escapes, and for those simd-json's general machinery (finding all
//! structural characters, building a tape, parsing every number into a
//! double, then walking the positions again for the numbers' text) was half
//! of all the instructions the sink executed per message. This pass reads
//! such a message once, left to right, and takes what the row needs as
//! slices of the payload.
//!
//! It only ever *accepts*: anything it is not certain about — an escape, a
//! nested value, a number it might read differently from simd-json, a
//! missing, duplicated or mistyped field, or any syntax error — makes it
//! answer `None`, and the message goes through simd-json, which then decides
//! and words the error. So it needs to be exact only on what it accepts, and
//! the tests check exactly that against simd-json over mutated messages.

/// The fields of an order, as slices of its payload.
#[derive(Debug, PartialEq)]
pub(super) struct Flat<'a> {
    /// `id`, `order_id`, then `quantity`, `unit_price` and `total_value` as
    /// SQL literals, defaults filled in.
    pub fields: [&'a str; 5],
    pub processed_at: Option<&'a str>,
}

/// Reads `payload` if it is a flat order this pass is sure about.
pub(super) fn parse(payload: &[u8]) -> Option<Flat<'_>> {
    // One validation of the whole payload (as simd-json does), after which
    // any slice between ASCII delimiters is valid text. Messages are nearly
    // always ASCII, which is checked in a fraction of a full validation.
    let doc = if is_ascii(payload) {
        // SAFETY: ASCII is valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(payload) }
    } else {
        std::str::from_utf8(payload).ok()?
    };
    let b = doc.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut id: Option<&str> = None;
    let mut order_id: Option<&str> = None;
    // Per numeric field: not seen, seen as null, or seen with its text.
    let mut nums: [Option<Option<&str>>; 4] = [None; 4];
    loop {
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'"') {
            return None; // also `{}`, which lacks the required fields
        }
        let (field, key_end) = key_at(b, i + 1)?;
        i = skip_ws(b, key_end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let value = match *b.get(i)? {
            b'"' => {
                let end = string_end(b, i + 1)?;
                let text = doc.get(i + 1..end)?;
                i = end + 1;
                Value::Str(text)
            }
            b'-' | b'0'..=b'9' => {
                // What follows the number is checked like after any value,
                // so `1.2.3` or `01` end up refused there.
                let end = plain_number(b, i)?;
                let text = doc.get(i..end)?;
                i = end;
                Value::Num(text)
            }
            b'n' => {
                i = literal(b, i, b"null")?;
                Value::Null
            }
            b't' => {
                i = literal(b, i, b"true")?;
                Value::Bool
            }
            b'f' => {
                i = literal(b, i, b"false")?;
                Value::Bool
            }
            _ => return None, // nested values go the general way
        };
        let num_slot = match field {
            Field::Id | Field::OrderId => {
                let slot = if field == Field::Id {
                    &mut id
                } else {
                    &mut order_id
                };
                match value {
                    Value::Str(s) if slot.is_none() => *slot = Some(s),
                    _ => return None,
                }
                None
            }
            Field::Num(k) => Some(k),
            Field::Other => None, // unknown fields are ignored
        };
        if let Some(k) = num_slot {
            let text = match value {
                Value::Num(t) => Some(t),
                Value::Null => None,
                _ => return None,
            };
            if nums[k].replace(text).is_some() {
                return None;
            }
        }
        i = skip_ws(b, i);
        match b.get(i)? {
            b',' => i += 1,
            b'}' => break,
            _ => return None,
        }
    }
    if skip_ws(b, i + 1) != b.len() {
        return None;
    }
    let (id, order_id) = (id?, order_id?);
    if id.is_empty() {
        return None;
    }
    let [quantity, unit_price, total_value, processed_at] = nums.map(Option::flatten);
    Some(Flat {
        fields: [
            id,
            order_id,
            quantity.unwrap_or("1"),
            unit_price.unwrap_or("0"),
            total_value.unwrap_or("0"),
        ],
        processed_at,
    })
}

/// A member's value as the one pass reads it: text without escapes, a
/// number's JSON text, `null`, or a boolean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Scalar<'a> {
    Str(&'a str),
    /// The text, where its point is in it, whether it has an exponent.
    Num(&'a str, Option<usize>, bool),
    Null,
    Bool(bool),
}

/// What [`members`] reports to.
pub(super) trait Members<'a> {
    /// Asked first with the bytes after a key's opening quote: the slot and
    /// length of the name that is the whole key (closing quote checked),
    /// which spares scanning the keys that matter, as `key_at` does for
    /// orders. Other keys are scanned and reach `member` without a slot.
    fn known(&self, rest: &[u8]) -> Option<(usize, usize)>;
    /// One member; `None` sends the message to simd-json (a duplicate, say).
    fn member(&mut self, slot: Option<usize>, value: Scalar<'a>) -> Option<()>;
}

/// Reports every member of `payload` in order, if it is a flat object this
/// pass is sure about: the same rules as [`parse`], for any field names (a
/// plan's). `None`, at once or after some members, sends the message to
/// simd-json.
#[inline]
pub(super) fn members<'a>(payload: &'a [u8], visit: &mut impl Members<'a>) -> Option<()> {
    let doc = if is_ascii(payload) {
        // SAFETY: ASCII is valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(payload) }
    } else {
        std::str::from_utf8(payload).ok()?
    };
    let b = doc.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(());
    }
    loop {
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let rest = b.get(i + 1..)?;
        let (slot, key_end) = match visit.known(rest) {
            Some((slot, len)) if rest.get(len) == Some(&b'"') => (Some(slot), i + 1 + len),
            _ => (None, string_end(b, i + 1)?),
        };
        i = skip_ws(b, key_end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let value = match *b.get(i)? {
            b'"' => {
                let end = string_end(b, i + 1)?;
                let text = doc.get(i + 1..end)?;
                i = end + 1;
                Scalar::Str(text)
            }
            b'-' | b'0'..=b'9' => {
                let shape = number_at(b, i)?;
                let text = doc.get(i..shape.end)?;
                // The point as a position in the number's text.
                let point = shape.point.map(|p| p - i);
                i = shape.end;
                Scalar::Num(text, point, shape.exponent)
            }
            b'n' => {
                i = literal(b, i, b"null")?;
                Scalar::Null
            }
            b't' => {
                i = literal(b, i, b"true")?;
                Scalar::Bool(true)
            }
            b'f' => {
                i = literal(b, i, b"false")?;
                Scalar::Bool(false)
            }
            _ => return None,
        };
        visit.member(slot, value)?;
        i = skip_ws(b, i);
        match b.get(i)? {
            b',' => i += 1,
            b'}' => break,
            _ => return None,
        }
    }
    (skip_ws(b, i + 1) == b.len()).then_some(())
}

/// Whether every byte is below 0x80, eight at a time. (The standard
/// library's check goes byte by byte over all that does not fill a 64-byte
/// block, which for messages of a few hundred bytes is much of them.)
fn is_ascii(b: &[u8]) -> bool {
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut words = b.chunks_exact(8);
    let mut seen = 0u64;
    for chunk in words.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        seen |= u64::from_le_bytes(word);
    }
    let rest = words.remainder().iter().fold(0u8, |a, &c| a | c);
    seen & HIGHS == 0 && rest < 0x80
}

/// What a member's key names.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Id,
    OrderId,
    /// `quantity`, `unit_price`, `total_value` or `processed_at`.
    Num(usize),
    Other,
}

/// The field named by the key whose text starts at `i`, and the position of
/// its closing quote. The known names are compared directly (with their
/// closing quote, so `idx` is not `id`); other keys are scanned.
fn key_at(b: &[u8], i: usize) -> Option<(Field, usize)> {
    // Fixed-size comparisons: each compiles to a few loads, not a memcmp.
    fn named<const N: usize>(rest: &[u8], name: &[u8; N], field: Field) -> Option<(Field, usize)> {
        (rest.first_chunk::<N>() == Some(name)).then_some((field, N - 1))
    }
    let rest = b.get(i..)?;
    let known = match rest.first()? {
        b'i' => named(rest, b"id\"", Field::Id),
        b'o' => named(rest, b"order_id\"", Field::OrderId),
        b'q' => named(rest, b"quantity\"", Field::Num(0)),
        b'u' => named(rest, b"unit_price\"", Field::Num(1)),
        b't' => named(rest, b"total_value\"", Field::Num(2)),
        b'p' => named(rest, b"processed_at\"", Field::Num(3)),
        _ => None,
    };
    match known {
        Some((field, len)) => Some((field, i + len)),
        None => Some((Field::Other, string_end(b, i)?)),
    }
}

enum Value<'a> {
    Str(&'a str),
    Num(&'a str),
    Null,
    Bool,
}

/// The first position at or after `i` that is not JSON whitespace.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
        i += 1;
    }
    i
}

/// The position after the literal `word` at `i`.
fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    let end = i + word.len();
    (b.get(i..end)? == word).then_some(end)
}

/// The position of the quote that closes a string whose text starts at `i`,
/// or `None` if the string holds an escape or a control character (the
/// former needs unescaping, the latter is invalid JSON) or never closes.
///
/// Eight bytes at a time: ids and keys are most of a message's bytes.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let rest = b.get(i..)?;
    let mut words = rest.chunks_exact(8);
    let mut at = 0;
    for chunk in words.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // High bit set in each byte that is a quote, a backslash or below
        // 0x20 (bytes of 0x80 and up never count, thanks to `!w`). Borrows
        // can mark bytes above a real hit, never below it, so the lowest
        // marked byte is exact.
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let hits = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w);
        let hits = hits & HIGHS;
        if hits != 0 {
            let k = (hits.trailing_zeros() / 8) as usize;
            return (chunk[k] == b'"').then_some(i + at + k);
        }
        at += 8;
    }
    for &c in words.remainder() {
        match c {
            b'"' => return Some(i + at),
            b'\\' | 0..=0x1f => return None,
            _ => at += 1,
        }
    }
    None
}

/// The end of the JSON number at `i`, if simd-json reads it without
/// question: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]{1,2})?`, at most 32
/// characters, and an integer (no fraction, no exponent) of at most 18
/// digits. A fraction or exponent makes a double, whose magnitude then lies
/// between 1e-131 and 1e131, far inside its range; an integer of 18 digits
/// fits an `i64`. Anything longer is left to simd-json, which refuses
/// integers beyond 64 bits and decides whether large exponents are finite.
///
/// The number ends where the grammar does; the caller checks that a
/// delimiter follows (so `01` and `1.2.3` are refused there).
fn plain_number(b: &[u8], start: usize) -> Option<usize> {
    number_at(b, start).map(|n| n.end)
}

/// Where a number [`plain_number`] accepts ends, and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NumberShape {
    pub end: usize,
    /// The position of its `.`, if it has a fraction.
    pub point: Option<usize>,
    pub exponent: bool,
}

/// [`plain_number`], telling also where the point is and whether there is
/// an exponent: the plan decoder's conversions need both, and would
/// otherwise look at every byte again.
#[inline(always)]
fn number_at(b: &[u8], start: usize) -> Option<NumberShape> {
    let digits = |mut i: usize| {
        while let Some(b'0'..=b'9') = b.get(i) {
            i += 1;
        }
        i
    };
    let negative = b.get(start) == Some(&b'-');
    let mut i = start + usize::from(negative);
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(i + 1),
        _ => return None,
    }
    let integer_digits = i - start - usize::from(negative);
    let mut float = false;
    let mut point = None;
    let mut exponent = false;
    if b.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return None;
        }
        point = Some(i);
        (i, float) = (end, true);
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let end = digits(i);
        if end == i || end - i > 2 {
            return None;
        }
        exponent = true;
        (i, float) = (end, true);
    }
    let fits = if float {
        i - start <= 32
    } else {
        integer_digits <= 18
    };
    fits.then_some(NumberShape {
        end: i,
        point,
        exponent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_end_at_the_first_quote_and_refuse_escapes_and_controls() {
        for (text, want) in [
            (&b"abc\"x"[..], Some(3)),
            (b"0123456789abcdef\"", Some(16)),
            (b"01234567\"", Some(8)),
            (b"\xc3\xa9t\xc3\xa9 \xe2\x82\xac\"", Some(9)),
            (b"abcdefg\\\"", None),
            (b"abcdefghijk\\\"", None),
            (b"abc\x1fdefgh\"", None),
            (b"abcdefghi\x00\"", None),
            (b"abcdefghijk", None),
            (b"", None),
        ] {
            assert_eq!(
                string_end(text, 0),
                want,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        // Every position of a hit inside and after the word-wide scan.
        for len in 0..24 {
            for (c, want) in [(b'"', Some(len)), (b'\\', None), (b'\n', None)] {
                let mut s = vec![b'a'; len];
                s.push(c);
                s.extend_from_slice(b"zz\"");
                assert_eq!(string_end(&s, 0), want, "len {len} char {c}");
            }
        }
    }

    #[test]
    fn ascii_is_told_apart_at_every_position() {
        for len in 0..40 {
            let mut s = vec![b'a'; len];
            assert!(is_ascii(&s), "{len}");
            for at in 0..len {
                s[at] = 0x80;
                assert!(!is_ascii(&s), "{len} {at}");
                s[at] = 0x7f;
                assert!(is_ascii(&s), "{len} {at}");
                s[at] = b'a';
            }
        }
    }

    #[test]
    fn keys_are_known_only_when_whole() {
        for (key, want) in [
            ("id\"", Field::Id),
            ("order_id\"", Field::OrderId),
            ("quantity\"", Field::Num(0)),
            ("unit_price\"", Field::Num(1)),
            ("total_value\"", Field::Num(2)),
            ("processed_at\"", Field::Num(3)),
            ("idx\"", Field::Other),
            ("i\"", Field::Other),
            ("order\"", Field::Other),
            ("processed_at_utc\"", Field::Other),
            ("source\"", Field::Other),
        ] {
            assert_eq!(
                key_at(key.as_bytes(), 0),
                Some((want, key.len() - 1)),
                "{key}"
            );
        }
        assert_eq!(key_at(b"i\\d\"", 0), None);
        assert_eq!(key_at(b"id", 0), None);
    }

    #[test]
    fn plain_numbers_follow_the_json_grammar() {
        let whole = |t: &str| plain_number(t.as_bytes(), 0) == Some(t.len());
        for ok in [
            "0",
            "-0",
            "7",
            "-12",
            "49.99",
            "0.5",
            "1e9",
            "1E+10",
            "-2.5e-99",
            "120",
            "123456789012345678",
            "-123456789012345678",
            "12345678901234567890.5",
        ] {
            assert!(whole(ok), "{ok}");
        }
        for bad in [
            "",
            "-",
            "01",
            "1.",
            ".5",
            "1e",
            "1e+",
            "1e100",
            "--1",
            "1-",
            "+1",
            "1.2.3",
            "0x1",
            "1e5e5",
            "1234567890123456789",
            "-1234567890123456789",
            "1234567890123456789012345678901.5",
        ] {
            assert!(!whole(bad), "{bad}");
        }
        // The number starts where it is asked to, and ends with its grammar.
        assert_eq!(plain_number(b"x:-1.5,", 2), Some(6));
    }

    #[test]
    fn flat_orders_are_read_in_one_pass() {
        let flat = parse(
            br#" { "id" : "a" ,"order_id":"o","quantity":5,"unit_price":49.99,"x":true,"y":false,"z":null,"w":"q","total_value":-1e2,"processed_at":null}
"#,
        )
        .unwrap();
        assert_eq!(flat.fields, ["a", "o", "5", "49.99", "-1e2"]);
        assert_eq!(flat.processed_at, None);
        let flat = parse(br#"{"id":"a","order_id":"o","processed_at":17}"#).unwrap();
        assert_eq!(flat.fields, ["a", "o", "1", "0", "0"]);
        assert_eq!(flat.processed_at, Some("17"));
    }

    #[test]
    fn anything_unusual_is_left_to_simd_json() {
        for doc in [
            r#"{"id":"a\"b","order_id":"o"}"#,
            r#"{"id":"a","order_id":"o","x":{}}"#,
            r#"{"id":"a","order_id":"o","x":[]}"#,
            r#"{"id":"a","order_id":"o","quantity":1e400}"#,
            r#"{"id":"a","order_id":"o","quantity":"5"}"#,
            r#"{"id":"a","id":"b","order_id":"o"}"#,
            r#"{"id":"","order_id":"o"}"#,
            r#"{"order_id":"o"}"#,
            r#"{"id":"a","order_id":"o"} x"#,
            r#"{"id":"a","order_id":"o",}"#,
            r#"{"id":"a","order_id":"o""#,
            r#"{"id":"a","order_id":"o","x":tru}"#,
            r#"{"id":"a","order_id":"o","x":truee}"#,
            "{\"id\":\"a\",\"order_id\":\"o\"}\u{c}",
            "{}",
            "[]",
        ] {
            assert_eq!(parse(doc.as_bytes()), None, "{doc}");
        }
        assert_eq!(parse(b"{\"id\":\"\xff\",\"order_id\":\"o\"}"), None);
    }
}
