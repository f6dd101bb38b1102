//! `POST /api/v1/forward`: the pools a sidecar forwards ([`crate::forward`]), stored as
//! if they had been pushed here. Same listener, token, body limits and intake as the
//! other push endpoints; a refused forward gets a 4xx naming the problem and changes
//! nothing. Counted in `poolwatch_ingest_requests_total{format="forward"}`.

use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::push::{read_body, reject};
use super::{json, Body, Ctx};
use crate::ingest::forward::parse_forward;

/// Reads, parses and stores one forward.
pub async fn handle(req: Request<Incoming>, ctx: &Ctx) -> Response<Body> {
    // The sidecar runs in the application's pod: its address is the application's.
    let peer = super::peer_of(&req);
    let body = match read_body(req, ctx).await {
        Ok(body) => body,
        Err(e) => return reject(ctx, "forward", e),
    };
    let max = ctx.store.max_pools();
    let mut pools = match body.parse(move |b| parse_forward(b, max)).await {
        Ok(pools) => pools,
        Err(e) => return reject(ctx, "forward", e),
    };
    for f in &mut pools {
        f.push.snapshot.peer = peer;
    }
    match ctx
        .store
        .apply_forwarded(pools, Instant::now(), crate::unix_now())
    {
        Ok(n) => {
            ctx.ingest.count("forward", "accepted");
            json(StatusCode::OK, &serde_json::json!({ "accepted": n }))
        }
        Err(e) => reject(ctx, "forward", e),
    }
}
