//! Where an event's id is read from: a header (`webhook-id` by default) or a JSON pointer into
//! the body. The id becomes a store key and an `Idempotency-Key` header, so it is bounded and
//! must be a plain header value.

use http::{HeaderMap, HeaderName};

/// Longer ids are refused: they are keys in the store and headers on every delivery.
const MAX_LEN: usize = 256;

pub(crate) fn from_header(headers: &HeaderMap, name: &HeaderName) -> Result<String, &'static str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or("the event id header is missing")?;
    if values.next().is_some() {
        return Err("the event id header is repeated");
    }
    let id = value.to_str().map_err(|_| "the event id is not visible ASCII")?;
    checked(id.trim())
}

/// The value at `pointer`: a string, or an integer written in decimal.
pub(crate) fn from_json(body: &[u8], pointer: &str) -> Result<String, &'static str> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the body is not JSON, so it has no event id")?;
    match doc.pointer(pointer) {
        Some(serde_json::Value::String(s)) => checked(s),
        Some(serde_json::Value::Number(n)) if n.is_i64() || n.is_u64() => checked(&n.to_string()),
        Some(_) => Err("the event id in the body is not a string or an integer"),
        None => Err("the body has no event id at the configured JSON pointer"),
    }
}

fn checked(id: &str) -> Result<String, &'static str> {
    if id.is_empty() {
        return Err("the event id is empty");
    }
    if id.len() > MAX_LEN {
        return Err("the event id is longer than 256 bytes");
    }
    if !id.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err("the event id is not visible ASCII");
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn header_ids() {
        let name = HeaderName::from_static("webhook-id");
        assert_eq!(
            from_header(&headers(&[("webhook-id", "msg_1")]), &name),
            Ok("msg_1".into())
        );
        assert_eq!(
            from_header(&headers(&[("webhook-id", " msg_1 ")]), &name),
            Ok("msg_1".into())
        );
        assert!(from_header(&headers(&[]), &name).is_err());
        assert!(from_header(&headers(&[("webhook-id", "")]), &name).is_err());
        assert!(from_header(&headers(&[("webhook-id", "a"), ("webhook-id", "b")]), &name).is_err());
        assert!(from_header(&headers(&[("webhook-id", &"x".repeat(257))]), &name).is_err());
        assert!(from_header(&headers(&[("webhook-id", &"x".repeat(256))]), &name).is_ok());
    }

    #[test]
    fn json_ids() {
        let body = br#"{"event_id":"evt_9","n":42,"f":1.5,"o":{},"deep":{"id":"d"}}"#;
        assert_eq!(from_json(body, "/event_id"), Ok("evt_9".into()));
        assert_eq!(from_json(body, "/n"), Ok("42".into()));
        assert_eq!(from_json(body, "/deep/id"), Ok("d".into()));
        assert!(from_json(body, "/f").is_err());
        assert!(from_json(body, "/o").is_err());
        assert!(from_json(body, "/missing").is_err());
        assert!(from_json(b"not json", "/event_id").is_err());
        assert!(from_json(br#"{"event_id":"a\nb"}"#, "/event_id").is_err());
    }
}
