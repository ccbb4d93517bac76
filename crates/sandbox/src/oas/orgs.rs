//! OAS organisations: 25 seeded, listed 10 a page with DRF's page-number pagination, created by
//! POST, activated by `make_active`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use http::StatusCode;
use serde_json::{json, Map, Value};

use super::login::required;
use super::{detail, St, USER_ID};
use crate::lock::lock;
use crate::reply;
use crate::state::Shared;
use crate::urlencoded::{decode, first, pairs};

const PAGE_SIZE: usize = 10;
const SEEDED: u64 = 25;
const CURRENCIES: [&str; 5] = ["USD", "EUR", "MXN", "GBP", "CAD"];

#[derive(Debug)]
pub(super) struct Orgs {
    items: Vec<Value>,
    next_id: u64,
}

impl Orgs {
    pub(super) fn seeded() -> Self {
        let items = (1..=SEEDED)
            .map(|id| {
                let base = CURRENCIES[(id as usize - 1) % CURRENCIES.len()];
                let mut currencies = vec![base];
                if base != "USD" {
                    currencies.push("USD");
                }
                json!({"id": id, "owner": null, "name": format!("Sandbox Organisation {id:02}"),
                       "base_currency": base, "currencies": currencies, "image": null})
            })
            .collect();
        Self {
            items,
            next_id: SEEDED + 1,
        }
    }
}

fn owner(shared: &Shared) -> Value {
    json!({"id": USER_ID, "username": shared.credentials.username, "email": shared.credentials.email})
}

pub(super) async fn list(State(st): St, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let orgs = lock(&st.orgs);
    let count = orgs.items.len();
    let pages = count.div_ceil(PAGE_SIZE).max(1);
    let page = match first(&pairs(&query), "page") {
        None => Some(1),
        Some("last") => Some(pages),
        Some(n) => n.parse::<usize>().ok().filter(|n| (1..=pages).contains(n)),
    };
    let Some(page) = page else {
        return detail(StatusCode::NOT_FOUND, "Invalid page.");
    };
    let owner = owner(&st.shared);
    let results: Vec<Value> = orgs
        .items
        .iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|o| {
            let mut o = o.clone();
            o["owner"] = owner.clone();
            o
        })
        .collect();
    let link = |to: usize| page_link(&st.shared.base_url, &query, to);
    reply::json(
        StatusCode::OK,
        json!({
            "count": count,
            "next": (page < pages).then(|| link(page + 1)),
            "previous": (page > 1).then(|| link(page - 1)),
            "results": results,
        }),
    )
}

/// DRF's `replace_query_param` / `remove_query_param`: other parameters kept, sorted by name;
/// page 1 is linked without a `page` parameter.
fn page_link(base_url: &str, raw_query: &str, page: usize) -> String {
    let mut params: Vec<&str> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| decode(p.split('=').next().unwrap_or_default()) != "page")
        .collect();
    let page_param = format!("page={page}");
    if page > 1 {
        params.push(&page_param);
    }
    params.sort_by_key(|p| p.split('=').next().unwrap_or_default().to_owned());
    let mut url = format!("{base_url}/api/organisations/");
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
    url
}

pub(super) async fn create(State(st): St, body: Bytes) -> Response {
    let fields = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(f)) => f,
        Ok(_) => {
            return reply::json(
                StatusCode::BAD_REQUEST,
                json!({"non_field_errors": ["Invalid data. Expected a dictionary."]}),
            )
        }
        Err(e) => return detail(StatusCode::BAD_REQUEST, &format!("JSON parse error - {e}")),
    };
    let mut errors = Map::new();
    let name = required(&fields, "name").map_err(|m| errors.insert("name".into(), json!([m])));
    let base = match required(&fields, "base_currency") {
        Ok(c) if is_currency(c) => Some(c),
        Ok(c) => {
            errors.insert(
                "base_currency".into(),
                json!([format!("\"{c}\" is not a valid choice.")]),
            );
            None
        }
        Err(m) => {
            errors.insert("base_currency".into(), json!([m]));
            None
        }
    };
    let currencies = match fields.get("currencies") {
        None | Some(Value::Null) => Err("This field is required."),
        Some(Value::Array(list)) if list.iter().all(|c| c.as_str().is_some_and(is_currency)) => {
            Ok(list.clone())
        }
        Some(Value::Array(_)) => Err("Every currency must be a 3-letter ISO code."),
        Some(_) => Err("Expected a list of items."),
    }
    .map_err(|m| errors.insert("currencies".into(), json!([m])));
    let image = fields.get("image").cloned().unwrap_or(Value::Null);
    let (Ok(name), Some(base), Ok(currencies), true) = (name, base, currencies, errors.is_empty()) else {
        return reply::json(StatusCode::BAD_REQUEST, Value::Object(errors));
    };

    let mut orgs = lock(&st.orgs);
    let id = orgs.next_id;
    orgs.next_id += 1;
    let org = json!({"id": id, "owner": null, "name": name, "base_currency": base,
                     "currencies": currencies, "image": image});
    orgs.items.push(org.clone());
    let mut org = org;
    org["owner"] = owner(&st.shared);
    reply::json(StatusCode::CREATED, org)
}

fn is_currency(c: &str) -> bool {
    c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
}

pub(super) async fn make_active(State(st): St, Path(id): Path<String>) -> Response {
    // Activation only matters to report processing, which the emulator does not model; the
    // answer is all a client can observe.
    let orgs = lock(&st.orgs);
    let found = id.parse::<u64>().ok().and_then(|id| {
        orgs.items
            .iter()
            .find(|o| o["id"] == id)
            .map(|o| o["name"].as_str().unwrap_or_default().to_owned())
    });
    let Some(name) = found else {
        return detail(StatusCode::NOT_FOUND, "Organization not found.");
    };
    reply::json(
        StatusCode::OK,
        json!({"message": format!("Organization \"{name}\" is now active.")}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_links_follow_drf() {
        let base = "http://127.0.0.1:9";
        assert_eq!(
            page_link(base, "", 2),
            "http://127.0.0.1:9/api/organisations/?page=2"
        );
        assert_eq!(
            page_link(base, "page=2", 1),
            "http://127.0.0.1:9/api/organisations/"
        );
        assert_eq!(
            page_link(base, "search=a%20b&page=1&a=1", 3),
            "http://127.0.0.1:9/api/organisations/?a=1&page=3&search=a%20b"
        );
    }

    #[test]
    fn seeds_have_25_distinct_organisations() {
        let orgs = Orgs::seeded();
        assert_eq!(orgs.items.len(), 25);
        assert_eq!(orgs.items[24]["name"], "Sandbox Organisation 25");
        assert_eq!(orgs.next_id, 26);
    }
}
