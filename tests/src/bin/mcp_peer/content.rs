//! The prompt and the resource behind `mcp-peer server`: both hand out a
//! customer record (personal data), so a test can see what a proxy makes
//! of prompt results, resource contents and the errors that name what was
//! asked for.

use rmcp::{
    ErrorData,
    model::{
        GetPromptRequestParams, GetPromptResult, PromptMessage, ReadResourceRequestParams,
        ReadResourceResult, ResourceContents, Role,
    },
};
use serde_json::json;

use super::customer;

/// The one prompt: a brief on customer `arguments.id`.
pub const PROMPT: &str = "customer_brief";

/// Resources are `customer://<id>`, each that customer's record.
pub const SCHEME: &str = "customer://";

/// `prompts/get`: the brief as one user message. An unknown prompt or a
/// missing id is a JSON-RPC error that names what was asked for, as many
/// servers' errors do.
pub fn prompt(request: GetPromptRequestParams) -> Result<GetPromptResult, ErrorData> {
    if request.name != PROMPT {
        return Err(ErrorData::invalid_params(
            format!("no prompt named {}", request.name),
            Some(json!({ "name": request.name })),
        ));
    }
    let id = request
        .arguments
        .as_ref()
        .and_then(|a| a.get("id"))
        .and_then(|v| v.as_str())
        .ok_or_else(|| ErrorData::invalid_params("customer_brief needs an `id` argument", None))?;
    let text = format!(
        "Summarise this customer for a support agent:\n{}",
        customer::record(id)
    );
    Ok(
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description(format!("Brief on customer {id}")),
    )
}

/// `resources/read`: the record of `customer://<id>`; any other URI is a
/// `resource not found` error that carries the URI.
pub fn resource(request: ReadResourceRequestParams) -> Result<ReadResourceResult, ErrorData> {
    let uri = request.uri;
    match uri.strip_prefix(SCHEME) {
        Some(id) if !id.is_empty() => Ok(ReadResourceResult::new(vec![ResourceContents::text(
            customer::record(id),
            uri.clone(),
        )])),
        _ => Err(ErrorData::resource_not_found(
            format!("no resource at {uri}"),
            Some(json!({ "uri": uri })),
        )),
    }
}
