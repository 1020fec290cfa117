//! Step `metadata`: the OAuth protected resource metadata (RFC 9728),
//! served to anyone and before any identity is asked for: a client
//! without a token reads it to learn where to get one.

use http::{Method, Request};

use super::{McpHandler, run::Stop};
use crate::{mcp::auth, proxy::ConnCtx};

impl McpHandler {
    /// Ends the request with the metadata document when it asks for it: a
    /// GET under the well-known path, on a port that takes OAuth tokens.
    pub(super) fn metadata<B>(&self, req: &Request<B>, ctx: &ConnCtx) -> Result<(), Stop> {
        if self.identity.has_oauth()
            && req.method() == Method::GET
            && let Some(suffix) = req.uri().path().strip_prefix(auth::METADATA_PATH)
        {
            return Err(Box::new(auth::metadata(&self.identity, req, ctx, suffix)));
        }
        Ok(())
    }
}
