//! Reading Osigu request bodies: a JSON object, its non-blank strings, and item lists.
//!
//! Each returns `None`/`Err(message)` rather than answering, so each handler decides the status
//! (400 for a malformed body; 404/409/422 are about records, not syntax).

use serde_json::{Map, Value};

/// The body as a JSON object; `None` for anything else, including an empty body.
pub(super) fn object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => Some(fields),
        _ => None,
    }
}

/// Like [`object`], but an empty body is an empty object: for calls whose body is optional.
pub(super) fn optional_object(body: &[u8]) -> Option<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(Map::new());
    }
    object(body)
}

/// A non-blank string field.
pub(super) fn text<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    fields
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// The non-empty `items` list, and the string `key` of every item (each must have one).
pub(super) fn items<'a>(
    fields: &'a Map<String, Value>,
    key: &str,
) -> Result<(&'a Vec<Value>, Vec<&'a str>), String> {
    let items = fields
        .get("items")
        .and_then(Value::as_array)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| "Field 'items' must be a non-empty list".to_owned())?;
    let keys = items
        .iter()
        .map(|i| {
            i.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
        })
        .collect::<Option<Vec<&str>>>()
        .ok_or_else(|| format!("Every item needs a '{key}'"))?;
    Ok((items, keys))
}

/// A list of non-blank strings, e.g. `claim_ids`; `None` if absent, empty or mixed.
pub(super) fn strings<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<Vec<&'a str>> {
    fields
        .get(name)?
        .as_array()
        .filter(|a| !a.is_empty())?
        .iter()
        .map(|v| v.as_str().filter(|s| !s.trim().is_empty()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("tests pass objects"),
        }
    }

    #[test]
    fn bodies_must_be_objects_unless_optional_and_empty() {
        assert!(object(b"{}").is_some());
        assert!(object(b"[]").is_none());
        assert!(object(b"").is_none());
        assert_eq!(optional_object(b" \n").map(|m| m.len()), Some(0));
        assert!(optional_object(b"nope").is_none());
        assert_eq!(
            optional_object(br#"{"indication":"J02"}"#).unwrap()["indication"],
            "J02"
        );
    }

    #[test]
    fn text_skips_blank_and_non_strings() {
        let f = fields(json!({"a": "x", "b": "  ", "c": 3}));
        assert_eq!(text(&f, "a"), Some("x"));
        assert_eq!(text(&f, "b"), None);
        assert_eq!(text(&f, "c"), None);
        assert_eq!(text(&f, "d"), None);
    }

    #[test]
    fn items_need_the_key_on_every_entry() {
        let f = fields(json!({"items": [{"code": "A"}, {"code": "B", "amount": 1}]}));
        assert_eq!(items(&f, "code").unwrap().1, vec!["A", "B"]);
        let missing = fields(json!({"items": [{"code": "A"}, {"amount": 1}]}));
        assert_eq!(items(&missing, "code").unwrap_err(), "Every item needs a 'code'");
        let empty = fields(json!({"items": []}));
        assert!(items(&empty, "code").unwrap_err().contains("non-empty"));
    }

    #[test]
    fn string_lists_are_all_or_nothing() {
        let f = fields(json!({"ok": ["a", "b"], "mixed": ["a", 1], "empty": []}));
        assert_eq!(strings(&f, "ok"), Some(vec!["a", "b"]));
        assert_eq!(strings(&f, "mixed"), None);
        assert_eq!(strings(&f, "empty"), None);
        assert_eq!(strings(&f, "absent"), None);
    }
}
