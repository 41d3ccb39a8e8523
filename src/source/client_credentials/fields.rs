//! The fields of a token endpoint's answer, read tolerantly: a JSON object
//! member by member, or a form.

use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::ResponseProblem;

/// `body` without a byte order mark and leading whitespace.
fn trim_start(body: &[u8]) -> &[u8] {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    &body[start..]
}

/// The answer's fields, as sent.
pub(super) struct Fields<'a>(Vec<(String, Field<'a>)>);

pub(super) enum Field<'a> {
    /// A JSON member's value, unparsed: only the fields read are parsed.
    Json(&'a RawValue),
    /// A JSON member's value that is not valid JSON (`NaN`, a raw control
    /// character in a string), as sent.
    Unreadable(&'a [u8]),
    /// A form value.
    Form(String),
}

impl Field<'_> {
    pub(super) fn text(&self) -> TextField {
        match self {
            Field::Form(value) => TextField::Text(value.clone()),
            Field::Unreadable(_) => TextField::NotText,
            Field::Json(raw) => match raw.get() {
                "null" => TextField::Absent,
                raw if raw.starts_with('"') => {
                    serde_json::from_str(raw).map_or(TextField::NotText, TextField::Text)
                }
                _ => TextField::NotText,
            },
        }
    }
}

/// A field read as text.
pub(super) enum TextField {
    /// Missing or `null`.
    Absent,
    Text(String),
    /// Not a string, or a string that cannot be read.
    NotText,
}

impl Fields<'_> {
    /// The last field of that name, as JSON objects and forms repeat them.
    pub(super) fn get(&self, name: &str) -> Option<&Field<'_>> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    pub(super) fn text(&self, name: &str) -> TextField {
        self.get(name).map_or(TextField::Absent, Field::text)
    }

    /// A number, sent as one or as a numeric string. Out of `f64`'s range
    /// it is infinite, not an error.
    pub(super) fn number(&self, name: &str) -> Option<f64> {
        let field = self.get(name)?;
        let text = match (field.text(), field) {
            (TextField::Text(text), _) => text,
            // A bare JSON value: checked below to be a number.
            (_, Field::Json(raw)) => raw.get().to_owned(),
            _ => return None,
        };
        let text = text.trim();
        // Digits, signs, a point and an exponent: Rust would also read
        // `inf` and `NaN`, which no provider means.
        let numeric = text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
        if text.is_empty() || !numeric {
            return None;
        }
        text.parse().ok()
    }
}

/// The body's fields: a JSON object, whatever the content type says, or a
/// form when the body is not JSON and the content type (or its absence)
/// allows one. `cut` says the body is the start of a longer one: the form
/// pair it ends in may be cut short, so it is left out.
pub(super) fn parse_fields<'a>(
    content_type: &str,
    body: &'a [u8],
    cut: bool,
) -> Result<Fields<'a>, ResponseProblem> {
    let trimmed = trim_start(body);
    if trimmed.is_empty() {
        return Err(ResponseProblem::EmptyBody);
    }
    // Garbage reads as a form, or as the start of an object, too: either
    // counts only if it names a field of a token response.
    let names_a_token_field = |key: &str| key == "access_token" || key == "error";
    if trimmed.starts_with(b"{") {
        let object = JsonObject::read(trimmed);
        // An object cut at the cap is one still: its members were read.
        let an_object = object.complete || (cut && !object.keys_seen.is_empty());
        if an_object || object.keys_seen.iter().any(|k| names_a_token_field(k)) {
            return Ok(Fields(object.members));
        }
    } else if serde_json::from_slice::<IgnoredAny>(trimmed).is_ok() {
        return Err(ResponseProblem::NotAnObject);
    }
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    let form_allowed = matches!(
        media_type,
        "application/x-www-form-urlencoded" | "text/plain" | ""
    );
    if form_allowed
        && let Ok(mut pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(trimmed)
        && pairs.iter().any(|(k, _)| names_a_token_field(k))
    {
        if cut {
            pairs.pop();
        }
        let fields = pairs
            .into_iter()
            .map(|(key, value)| (key, Field::Form(value)))
            .collect();
        return Ok(Fields(fields));
    }
    Err(ResponseProblem::NotATokenResponse)
}

/// The members of the JSON object a body starts with, read one at a time,
/// so that a quirk (a trailing comma, text after the object, a value that is
/// not valid JSON or runs on past its end, a number out of range) costs only
/// the member it is in, never the token beside it.
struct JsonObject<'a> {
    members: Vec<(String, Field<'a>)>,
    /// Every key read, its value readable or not.
    keys_seen: Vec<String>,
    /// Whether reading reached the object's closing brace.
    complete: bool,
}

impl<'a> JsonObject<'a> {
    /// Reads the object `body` starts with (`body[0]` is `{`).
    fn read(body: &'a [u8]) -> Self {
        let mut object = JsonObject {
            members: Vec::new(),
            keys_seen: Vec::new(),
            complete: false,
        };
        // After the `{`.
        let mut at = 1;
        loop {
            // Blanks and stray commas: `{,"a":1,,}` reads as `{"a":1}`.
            at = skip(body, at, |b| b.is_ascii_whitespace() || b == b',');
            match body.get(at) {
                None => return object,
                Some(b'}') => {
                    object.complete = true;
                    return object;
                }
                Some(_) => {}
            }
            let mut keys = serde_json::Deserializer::from_slice(&body[at..]).into_iter::<String>();
            let key = match keys.next() {
                Some(Ok(key)) => {
                    at += keys.byte_offset();
                    key
                }
                // Not a key: read on from the next member.
                _ => match next_member(body, at) {
                    Some(next) => {
                        at = next;
                        continue;
                    }
                    None => return object,
                },
            };
            object.keys_seen.push(key.clone());
            at = skip_whitespace(body, at);
            if body.get(at) == Some(&b':') {
                at += 1;
            }
            at = skip_whitespace(body, at);
            let mut values =
                serde_json::Deserializer::from_slice(&body[at..]).into_iter::<&RawValue>();
            let value = match values.next() {
                Some(Ok(value)) => {
                    let end = at + values.byte_offset();
                    let after = skip_whitespace(body, end);
                    // A value must end its member: `"say "hi""` or `3600 s`
                    // runs on, and is not what the provider meant.
                    if matches!(body.get(after), None | Some(b',' | b'}')) {
                        at = end;
                        Some(value)
                    } else {
                        None
                    }
                }
                _ => None,
            };
            match value {
                Some(value) => object.members.push((key, Field::Json(value))),
                None => match next_member(body, at) {
                    Some(next) => {
                        object
                            .members
                            .push((key, Field::Unreadable(&body[at..next])));
                        at = next;
                    }
                    // It runs to the end: a member cut short says nothing.
                    None => return object,
                },
            }
        }
    }
}

/// The first index from `at` on whose byte is not `skipped`.
fn skip(body: &[u8], mut at: usize, skipped: impl Fn(u8) -> bool) -> usize {
    while body.get(at).is_some_and(|&b| skipped(b)) {
        at += 1;
    }
    at
}

fn skip_whitespace(body: &[u8], at: usize) -> usize {
    skip(body, at, |b| b.is_ascii_whitespace())
}

/// Where the member at `body[at]` ends: the next `,` or `}` outside strings,
/// arrays and objects. `None` when the body ends first.
fn next_member(body: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &byte) in body.iter().enumerate().skip(at) {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => depth -= 1,
            b',' | b'}' if depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(fields: &Fields<'_>, name: &str) -> Option<String> {
        match fields.text(name) {
            TextField::Text(text) => Some(text),
            TextField::Absent => None,
            TextField::NotText => Some("<not text>".to_owned()),
        }
    }

    #[test]
    fn a_quirk_costs_only_its_own_member() {
        for (body, name, expected) in [
            (r#"{"a":"1"}"#, "a", Some("1")),
            (r#"{"a":"1",}"#, "a", Some("1")),
            (r#"{"a":"1"} trailing"#, "a", Some("1")),
            (r#"{"a":"1","a":"2"}"#, "a", Some("2")),
            (r#"{ "a" : "1" , "b" : NaN }"#, "a", Some("1")),
            (r#"{"b":NaN,"a":"1"}"#, "b", Some("<not text>")),
            (r#"{"b":"say "hi"","a":"1"}"#, "a", Some("1")),
            (r#"{"b":3600 s,"a":"1"}"#, "b", Some("<not text>")),
            (r#"{"a":null}"#, "a", None),
            (r#"{"a":{"x":[1,"}"]},"b":"2"}"#, "b", Some("2")),
            (r#"{"a":"1", 7: "x", "b":"2"}"#, "b", Some("2")),
        ] {
            let fields = parse_fields("application/json", body.as_bytes(), false)
                .ok()
                .unwrap_or_else(|| panic!("{body} reads"));
            assert_eq!(text(&fields, name).as_deref(), expected, "{body}");
        }
    }

    #[test]
    fn numbers_are_read_from_numbers_and_numeric_strings() {
        for (value, expected) in [
            ("3600", Some(3600.0)),
            ("\"3600\"", Some(3600.0)),
            ("\" 1.5 \"", Some(1.5)),
            ("\"inf\"", None),
            ("\"NaN\"", None),
            ("true", None),
            ("\"\"", None),
        ] {
            let body = format!(r#"{{"n":{value}}}"#);
            let fields = parse_fields("", body.as_bytes(), false).ok().unwrap();
            assert_eq!(fields.number("n"), expected, "{value}");
        }
    }

    #[test]
    fn what_is_not_a_token_response_says_so() {
        for (content_type, body, expected) in [
            ("application/json", "  ", ResponseProblem::EmptyBody),
            ("application/json", "[1]", ResponseProblem::NotAnObject),
            ("application/json", "\"text\"", ResponseProblem::NotAnObject),
            ("text/html", "<html>", ResponseProblem::NotATokenResponse),
            (
                "text/html",
                "access_token=t",
                ResponseProblem::NotATokenResponse,
            ),
            ("", "a=1&b=2", ResponseProblem::NotATokenResponse),
            ("", "{ not json", ResponseProblem::NotATokenResponse),
        ] {
            assert_eq!(
                parse_fields(content_type, body.as_bytes(), false).err(),
                Some(expected),
                "{content_type} {body}"
            );
        }
    }

    #[test]
    fn the_last_pair_of_a_cut_form_is_left_out() {
        let body = b"error=invalid_request&error_description=a+long+desc";
        let fields = parse_fields("", body, false).ok().unwrap();
        assert!(matches!(
            fields.text("error_description"),
            TextField::Text(_)
        ));
        let fields = parse_fields("", body, true).ok().unwrap();
        assert!(matches!(
            fields.text("error_description"),
            TextField::Absent
        ));
        assert!(matches!(fields.text("error"), TextField::Text(e) if e == "invalid_request"));
    }
}
