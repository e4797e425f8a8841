//! Output formats: the seed client's text lines by default, one JSON object per line with
//! `--output json`, and the helpers both need (Go-style quoting, binary values in JSON).

use clap::ValueEnum;
use serde_json::{Value, json};

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The seed client's lines (`ok=true leader=""`, `value="..."`) and tables.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Quotes bytes as Go's `%q` does for a string: `"`-delimited, with `\"`, `\\`, the usual
/// escapes for control characters, and `\xNN` for bytes that are not valid UTF-8.
pub fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{b}' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

/// A value for JSON output: `{"value": "text"}` when it is UTF-8, otherwise
/// `{"value_base64": "..."}`; merged into `object`.
pub fn put_value(object: &mut Value, value: &[u8]) {
    let (field, text) = match std::str::from_utf8(value) {
        Ok(text) => ("value", text.to_string()),
        Err(_) => ("value_base64", base64(value)),
    };
    if let Value::Object(map) = object {
        map.insert(field.to_string(), json!(text));
    }
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_matches_go() {
        assert_eq!(go_quote(b"john_doe"), r#""john_doe""#);
        assert_eq!(go_quote(b""), r#""""#);
        assert_eq!(go_quote(b"a\"b\\c\n\t\x01"), r#""a\"b\\c\n\t\x01""#);
        assert_eq!(go_quote("héllo".as_bytes()), "\"héllo\"");
        assert_eq!(go_quote(b"\xff\xfeok"), r#""\xff\xfeok""#);
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn binary_values_go_to_base64_in_json() {
        let mut object = json!({"found": true});
        put_value(&mut object, b"\xff");
        assert_eq!(object, json!({"found": true, "value_base64": "/w=="}));
        let mut object = json!({});
        put_value(&mut object, b"v");
        assert_eq!(object, json!({"value": "v"}));
    }
}
