//! A source's own secret values, found in text a server sends back and
//! hidden.
//!
//! A token endpoint that refuses a request often echoes part of it: the form
//! (with the client secret), a header (the API key, the Basic credentials),
//! re-encoded however its framework likes. [`Secrets`] holds a source's own
//! secret values and finds them in any encoding a server could produce,
//! mixed freely within one value:
//!
//! - raw, form-encoded (`+` for a space) or percent-encoded (RFC 3986,
//!   `encodeURIComponent`, Python's `quote`), upper- or lowercase hex;
//! - escaped inside a JSON string (`\"`, `\/`, `\u00e9`, surrogate pairs);
//! - escaped for HTML (`&amp;`, `&quot;`, `&#39;`, `&#x7E;`);
//! - and any of these over one more layer of them: a secret encoded twice
//!   (`%257E`, JSON shown in HTML) is found too.
//!
//! Values a server sent (its own token) are found as sent, or with one layer
//! taken off. The search is one pass per secret and layer: no position
//! holds more partial matches than the secret has bytes.

use serde_json::Value;

use super::REDACTED;

/// Secret values, found and hidden: a source's own in any encoding, values
/// a server sent as they were sent.
#[derive(Clone, Default)]
pub(crate) struct Secrets {
    secrets: Vec<Box<str>>,
    verbatim: Vec<Box<str>>,
}

impl Secrets {
    /// Adds a secret of the source's own, to be found in any encoding; an
    /// empty one is ignored.
    pub(crate) fn add(&mut self, secret: &str) {
        if !secret.is_empty() && !self.secrets.iter().any(|s| &**s == secret) {
            self.secrets.push(secret.into());
        }
    }

    /// Adds a value a server sent (its own token, say), to be found as it
    /// was sent, or with one layer of encoding taken off. Never in a mix of
    /// encodings: the server chose the value, and could choose one that is
    /// slow to look for that way.
    pub(crate) fn add_verbatim(&mut self, value: &str) {
        if !value.is_empty() && !self.verbatim.iter().any(|s| &**s == value) {
            self.verbatim.push(value.into());
        }
    }

    /// `text` with every occurrence of a secret, in any encoding, replaced by
    /// `[redacted]`. Occurrences that overlap or touch are hidden as one.
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.secrets.is_empty() && self.verbatim.is_empty() {
            return text.to_owned();
        }
        let mut spans = Vec::new();
        self.find(text.as_bytes(), |start, end| (start, end), &mut spans);
        // With one layer of each encoding taken off first, a secret encoded
        // twice (a percent-encoded URL inside a query, JSON shown in HTML)
        // is found too.
        for introducer in ENCODING_INTRODUCERS {
            if let Some(view) = Decoded::new(text.as_bytes(), introducer) {
                let span_of =
                    |start: usize, end: usize| (view.units[start].0, view.units[end - 1].1);
                self.find(&view.bytes, span_of, &mut spans);
            }
        }
        // Whole characters are replaced. A match starts and ends on their
        // boundaries anyway (a secret starts with a whole character, every
        // encoding with an ASCII byte), but should one not, it grows.
        for (start, end) in &mut spans {
            while !text.is_char_boundary(*start) {
                *start -= 1;
            }
            while !text.is_char_boundary(*end) {
                *end += 1;
            }
        }
        spans.sort_unstable();
        // Spans that overlap or touch are hidden as one.
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (start, end) in spans {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for (start, end) in merged {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = end;
        }
        out.push_str(&text[copied..]);
        out
    }

    /// Adds the span, in the original text, of every secret found in
    /// `bytes` (the text, or a decoded view of it); `span_of` maps a span of
    /// `bytes` back.
    fn find(
        &self,
        bytes: &[u8],
        span_of: impl Fn(usize, usize) -> (usize, usize),
        spans: &mut Vec<(usize, usize)>,
    ) {
        let mut found = Vec::new();
        for secret in &self.secrets {
            occurrences(bytes, secret.as_bytes(), &mut found);
        }
        spans.extend(found.into_iter().map(|(start, end)| span_of(start, end)));
        // A view may not be UTF-8; the text itself always is.
        if let Ok(text) = std::str::from_utf8(bytes) {
            for verbatim in &self.verbatim {
                spans.extend(
                    text.match_indices(&**verbatim)
                        .map(|(start, m)| span_of(start, start + m.len())),
                );
            }
        }
    }

    /// Scrubs every string inside a JSON value, keys left as they are.
    pub(crate) fn scrub_json(&self, value: &mut Value) {
        match value {
            Value::String(text) => *text = self.scrub(text),
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.scrub_json(v)),
            _ => {}
        }
    }
}

/// The bytes that start an encoding unit: `%XX`, a JSON escape, an HTML
/// character reference.
const ENCODING_INTRODUCERS: [u8; 3] = [b'%', b'\\', b'&'];

/// What one encoding unit stands for: a byte (`%XX`) or a character (a JSON
/// escape, an HTML reference), as UTF-8.
struct Unit {
    bytes: [u8; 4],
    len: usize,
}

impl Unit {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The encoding unit at the start of `text`, if it starts with one, and
/// how many bytes of `text` it takes.
fn decode_unit(text: &[u8]) -> Option<(Unit, usize)> {
    let mut bytes = [0; 4];
    match text.first()? {
        b'%' => {
            bytes[0] = text.get(1..3).and_then(hex_byte)?;
            Some((Unit { bytes, len: 1 }, 3))
        }
        b'\\' | b'&' => {
            let (ch, used) = escaped_char(text)?;
            let len = ch.encode_utf8(&mut bytes).len();
            Some((Unit { bytes, len }, used))
        }
        _ => None,
    }
}

/// Text with one layer of encoding taken off, and where each of its bytes
/// came from.
struct Decoded {
    bytes: Vec<u8>,
    /// For each byte, the span of the original text it was decoded from.
    units: Vec<(usize, usize)>,
}

impl Decoded {
    /// `text` with the units that start with `introducer` decoded; `None`
    /// when it holds none.
    fn new(text: &[u8], introducer: u8) -> Option<Self> {
        let mut decoded = Decoded {
            bytes: Vec::with_capacity(text.len()),
            units: Vec::with_capacity(text.len()),
        };
        let mut any = false;
        let mut at = 0;
        while at < text.len() {
            let rest = &text[at..];
            let unit = if rest[0] == introducer {
                decode_unit(rest)
            } else {
                None
            };
            let (bytes, used) = match &unit {
                Some((unit, used)) => {
                    any = true;
                    (unit.as_bytes(), *used)
                }
                None => (&rest[..1], 1),
            };
            decoded.bytes.extend_from_slice(bytes);
            decoded
                .units
                .extend(std::iter::repeat_n((at, at + used), bytes.len()));
            at += used;
        }
        any.then_some(decoded)
    }
}

/// The longest reading of one character: a surrogate pair as two JSON
/// escapes (`\ud83d\ude00`), 12 bytes, with room to spare.
const REACH: usize = 16;

/// Adds every span of `text` that stands for `secret`, in any mix of the
/// encodings above.
///
/// One pass from left to right. At each position wait the partial matches
/// that continue there, one per length matched (two that have matched as
/// much continue alike; the one that started first is kept, its span
/// covering the other's). `%`, `\` and `&` may stand for themselves or
/// start an encoding, so a partial match may go on in two ways; still, no
/// position holds more partial matches than the secret has bytes, whatever
/// the text.
fn occurrences(text: &[u8], secret: &[u8], found: &mut Vec<(usize, usize)>) {
    const NONE: usize = usize::MAX;
    // waiting[position % REACH][matched]: where that partial match started.
    let mut waiting = vec![vec![NONE; secret.len()]; REACH];
    // The lengths set in each slot of `waiting`.
    let mut lengths: Vec<Vec<usize>> = vec![Vec::new(); REACH];
    let mut here = Vec::new();
    for position in 0..text.len() {
        let slot = position % REACH;
        here.clear();
        here.push((0, position));
        for matched in lengths[slot].drain(..) {
            here.push((
                matched,
                std::mem::replace(&mut waiting[slot][matched], NONE),
            ));
        }
        for &(matched, start) in &here {
            for (decoded, used) in readings(text, position, &secret[matched..])
                .into_iter()
                .flatten()
            {
                let (matched, next) = (matched + decoded, position + used);
                if matched == secret.len() {
                    found.push((start, next));
                    continue;
                }
                let wait = &mut waiting[next % REACH][matched];
                if *wait == NONE {
                    lengths[next % REACH].push(matched);
                }
                *wait = (*wait).min(start);
            }
        }
    }
}

/// The ways the text at `at` can stand for the start of `secret`: as
/// itself, and as an encoding. Each is (secret bytes it stands for, text
/// bytes it takes).
fn readings(text: &[u8], at: usize, secret: &[u8]) -> [Option<(usize, usize)>; 2] {
    let (Some(&first), Some(&wanted)) = (text.get(at), secret.first()) else {
        return [None, None];
    };
    let rest = &text[at..];
    let literal = (first == wanted).then_some((1, 1));
    let encoded = match first {
        b'+' if wanted == b' ' => Some((1, 1)),
        _ => decode_unit(rest).and_then(|(unit, used)| {
            let decoded = unit.as_bytes();
            secret.starts_with(decoded).then_some((decoded.len(), used))
        }),
    };
    [literal, encoded]
}

/// The character a JSON escape (`\n`, `\u00e9`, a surrogate pair) or an HTML
/// character reference (`&amp;`, `&#39;`, `&#x27;`) at the start of `text`
/// stands for, and its length.
fn escaped_char(text: &[u8]) -> Option<(char, usize)> {
    match text {
        [b'\\', b'u', rest @ ..] => {
            let high = hex_u16(rest.get(..4)?)?;
            if let Some(ch) = char::from_u32(u32::from(high)) {
                return Some((ch, 6));
            }
            // A high surrogate: the low half follows as another escape.
            let low = match rest.get(4..10)? {
                [b'\\', b'u', low @ ..] => hex_u16(low)?,
                _ => return None,
            };
            let ch = char::decode_utf16([high, low]).next()?.ok()?;
            Some((ch, 12))
        }
        [b'\\', escape, ..] => {
            let ch = match escape {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                _ => return None,
            };
            Some((ch, 2))
        }
        [b'&', rest @ ..] => {
            // The longest reference is `&#x10FFFF;` or `&#1114111;`.
            let end = rest.iter().take(9).position(|&b| b == b';')?;
            let name = std::str::from_utf8(&rest[..end]).ok()?;
            let ch = match name {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                _ => {
                    let number = name.strip_prefix('#')?;
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => number.parse().ok()?,
                    };
                    char::from_u32(code)?
                }
            };
            Some((ch, end + 2))
        }
        _ => None,
    }
}

fn hex_byte(digits: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(digits).ok()?;
    u8::from_str_radix(text, 16).ok()
}

fn hex_u16(digits: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(digits).ok()?;
    if text.len() != 4 {
        return None;
    }
    u16::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Secrets {
        let mut secrets = Secrets::default();
        for value in values {
            secrets.add(value);
        }
        secrets
    }

    #[test]
    fn every_encoding_of_a_secret_is_found() {
        // An Azure-style secret: `~`, `.`, `_`, plus a space, a quote, a
        // slash, an ampersand and a non-ASCII letter.
        let secrets = secrets(&["a~B.c_d e\"f/g&é"]);
        for echoed in [
            // raw
            "a~B.c_d e\"f/g&é",
            // form (WHATWG): `~` encoded, space as `+`
            "a%7EB.c_d+e%22f%2Fg%26%C3%A9",
            // RFC 3986 / encodeURIComponent: `~` kept, space as %20
            "a~B.c_d%20e%22f%2Fg%26%C3%A9",
            // Python's quote: `/` kept too
            "a~B.c_d%20e%22f/g%26%C3%A9",
            // lowercase hex
            "a%7eB.c_d%20e%22f%2fg%26%c3%a9",
            // every byte encoded
            "%61%7E%42%2E%63%5F%64%20%65%22%66%2F%67%26%C3%A9",
            // inside a JSON string
            "a~B.c_d e\\\"f\\/g&\\u00e9",
            "\\u0061~B.c_d\\u0020e\\u0022f/g\\u0026\\u00E9",
            // escaped for HTML
            "a~B.c_d e&quot;f/g&amp;é",
            "a&#126;B.c_d e&#34;f&#x2F;g&#38;&#xE9;",
        ] {
            let text = format!("got <{echoed}> here");
            assert_eq!(secrets.scrub(&text), "got <[redacted]> here", "{echoed}");
        }
    }

    #[test]
    fn surrogate_pairs_and_multibyte_text_around_secrets() {
        let secrets = secrets(&["k😀y"]);
        assert_eq!(secrets.scrub("é k\\ud83d\\ude00y ü"), "é [redacted] ü");
        assert_eq!(secrets.scrub("k%F0%9F%98%80y"), "[redacted]");
        // Near misses stay.
        for kept in [
            "k\\ud83dy",
            "k%F0%9F%98y",
            "ky",
            "k😀",
            "%",
            "\\u12",
            "&#;",
            "&#x110000;",
        ] {
            assert_eq!(secrets.scrub(kept), kept);
        }
    }

    #[test]
    fn a_secret_holding_escape_characters_is_found_in_every_reading() {
        // `%`, `\` and `&` are themselves or start an encoding; both
        // readings are tried.
        let secrets = secrets(&[r"5%\&x"]);
        for echoed in [
            r"5%\&x",
            "5%25%5C%26x",
            "5%25%5c&amp;x",
            r"5%\\&x",
            r"5\u0025\\\u0026x",
            "5&#37;&#92;&#38;x",
        ] {
            assert_eq!(secrets.scrub(echoed), "[redacted]", "{echoed}");
        }
    }

    #[test]
    fn a_secret_encoded_twice_is_found() {
        let secrets = secrets(&["a~B\"c&"]);
        for echoed in [
            // A percent-encoded URL inside a query: `%` encoded again.
            "a%257EB%2522c%2526",
            // JSON shown in HTML.
            "a~B\\&quot;c&amp;",
            // HTML inside a JSON string.
            "a~B\\u0026quot;c\\u0026amp;",
        ] {
            assert_eq!(secrets.scrub(echoed), "[redacted]", "{echoed}");
        }
    }

    #[test]
    fn a_character_encoded_twice_is_found() {
        let secrets = secrets(&["café"]);
        for echoed in ["caf&amp;#xE9;", "caf%26%23233%3B", "caf\\u00e9"] {
            assert_eq!(secrets.scrub(echoed), "[redacted]", "{echoed}");
        }
    }

    #[test]
    fn values_a_server_sent_are_found_as_sent() {
        let mut secrets = Secrets::default();
        secrets.add_verbatim("tok-1");
        assert_eq!(
            secrets.scrub("a tok-1 b \"tok-1\""),
            "a [redacted] b \"[redacted]\""
        );
        // Or with one layer of encoding taken off, never by mixing them.
        assert_eq!(secrets.scrub("tok%2D1"), "[redacted]");
        assert_eq!(secrets.scrub("to&#107;%2D1"), "to&#107;%2D1");
    }

    #[test]
    fn overlapping_secrets_are_hidden_whole() {
        let secrets = secrets(&["zab", "abcdef"]);
        assert_eq!(secrets.scrub("<zabcdef>"), "<[redacted]>");
        assert_eq!(secrets.scrub("<zababcdef>"), "<[redacted]>");
        assert_eq!(secrets.scrub("<zab abcdef>"), "<[redacted] [redacted]>");
    }

    #[test]
    fn a_run_of_escape_characters_is_read_in_one_pass() {
        // Each `\` may be itself or half of an escaped one: tried one by
        // one, the readings of 48 of them would number 2^48.
        let secret = format!("{}x", "\\".repeat(48));
        let secrets = secrets(&[&secret]);
        let text = "\\".repeat(96);
        assert_eq!(secrets.scrub(&text), text);
        assert_eq!(secrets.scrub(&format!("{text}x")), "[redacted]");
    }

    #[test]
    fn the_longest_secret_goes_whole_and_repeats_all_go() {
        let secrets = secrets(&["key", "key-and-more"]);
        assert_eq!(
            secrets.scrub("key-and-more, key, key%2Dand%2Dmore"),
            "[redacted], [redacted], [redacted]"
        );
        assert_eq!(Secrets::default().scrub("key"), "key");
    }

    #[test]
    fn secrets_inside_json_strings_are_scrubbed() {
        let secrets = secrets(&["s3cret"]);
        let mut value = serde_json::json!({"a": ["x s3cret y", {"b": "s%33cret"}], "s3cret": 1});
        secrets.scrub_json(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"a": ["x [redacted] y", {"b": "[redacted]"}], "s3cret": 1})
        );
    }
}
