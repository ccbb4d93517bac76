//! `POST /v1/invoices/upload`: accepts any body (a multipart form or the raw file) and answers
//! with its size and SHA-256, computed chunk by chunk as it streams in. The hash covers the body
//! exactly as sent (multipart framing included), which is what lets a gateway test prove that a
//! large upload crossed the proxy byte for byte without the emulator buffering it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{bad_request, Ottimate};
use crate::lock::lock;
use crate::reply;
use crate::tee::next_chunk;

pub(super) async fn upload(State(st): State<Arc<Ottimate>>, headers: HeaderMap, mut body: Body) -> Response {
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    while let Some(chunk) = next_chunk(&mut body).await {
        let Ok(chunk) = chunk else {
            return bad_request("The upload was interrupted.");
        };
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let id = lock(&st.store).next_upload_id();
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    reply::json(
        StatusCode::CREATED,
        json!({"id": id, "status": "processing", "size": size,
               "sha256": hex::encode(hasher.finalize()), "content_type": content_type}),
    )
}
