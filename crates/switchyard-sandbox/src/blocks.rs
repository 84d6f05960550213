//! Block Kit validation against Slack's documented limits.

use serde_json::Value;

/// Where the blocks go: messages and surfaces (modals, Home tabs) have different limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Message,
    View,
}

pub const MAX_TEXT_CHARS: usize = 40_000;
const MAX_MESSAGE_BLOCKS: usize = 50;
const MAX_VIEW_BLOCKS: usize = 100;
const MAX_SECTION_TEXT: usize = 3_000;
const MAX_SECTION_FIELDS: usize = 10;
const MAX_FIELD_TEXT: usize = 2_000;
const MAX_HEADER_TEXT: usize = 150;
const MAX_MARKDOWN_TEXT: usize = 12_000;
const MAX_ACTIONS_ELEMENTS: usize = 25;
const MAX_CONTEXT_ELEMENTS: usize = 10;
const MAX_BLOCK_ID: usize = 255;
/// Slack answers `msg_blocks_too_long` when a message's blocks carry about this much text.
pub const MAX_MESSAGE_BLOCK_TEXT: usize = 13_000;

const BLOCK_TYPES: &[&str] = &[
    "actions",
    "context",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "markdown",
    "rich_text",
    "section",
    "table",
    "video",
    "context_actions",
];

/// Why blocks were refused: Slack's error code and its explanations.
#[derive(Debug, Clone, PartialEq)]
pub struct BlocksError {
    /// `invalid_blocks`, `invalid_blocks_format` or `msg_blocks_too_long`.
    pub code: &'static str,
    pub errors: Vec<String>,
}

fn chars(v: Option<&Value>) -> usize {
    v.and_then(Value::as_str).map_or(0, |s| s.chars().count())
}

fn text_of(obj: Option<&Value>) -> usize {
    chars(obj.and_then(|t| t.get("text")))
}

/// Validates `blocks` (a JSON array) for a message or a view.
pub fn validate(blocks: &Value, surface: Surface) -> Result<(), BlocksError> {
    let Some(list) = blocks.as_array() else {
        return Err(BlocksError {
            code: "invalid_blocks_format",
            errors: vec!["blocks must be an array".into()],
        });
    };
    let mut errors = Vec::new();
    let max = match surface {
        Surface::Message => MAX_MESSAGE_BLOCKS,
        Surface::View => MAX_VIEW_BLOCKS,
    };
    if list.len() > max {
        errors.push(format!(
            "no more than {max} items allowed [json-pointer:/blocks]"
        ));
    }
    let mut block_ids = std::collections::HashSet::new();
    let mut markdown_total = 0;
    for (i, block) in list.iter().enumerate() {
        let at = format!("[json-pointer:/blocks/{i}]");
        let Some(kind) = block.get("type").and_then(Value::as_str) else {
            errors.push(format!("missing required field: type {at}"));
            continue;
        };
        if !BLOCK_TYPES.contains(&kind) {
            errors.push(format!("unsupported type: {kind} {at}"));
            continue;
        }
        if let Some(id) = block.get("block_id").and_then(Value::as_str) {
            if id.chars().count() > MAX_BLOCK_ID {
                errors.push(format!(
                    "must be less than {MAX_BLOCK_ID} characters {at}/block_id"
                ));
            }
            if !block_ids.insert(id.to_string()) {
                errors.push(format!("duplicate block_id {id} {at}"));
            }
        }
        match kind {
            "section" => {
                let text = block.get("text");
                let fields = block.get("fields").and_then(Value::as_array);
                if text.is_none() && fields.is_none() {
                    errors.push(format!("must provide either text or fields {at}"));
                }
                if text_of(text) > MAX_SECTION_TEXT {
                    errors.push(format!(
                        "must be less than {} characters [json-pointer:/blocks/{i}/text/text]",
                        MAX_SECTION_TEXT + 1
                    ));
                }
                if let Some(fields) = fields {
                    if fields.len() > MAX_SECTION_FIELDS {
                        errors.push(format!(
                            "no more than {MAX_SECTION_FIELDS} items allowed [json-pointer:/blocks/{i}/fields]"
                        ));
                    }
                    for (j, f) in fields.iter().enumerate() {
                        if chars(f.get("text")) > MAX_FIELD_TEXT {
                            errors.push(format!(
                                "must be less than {} characters [json-pointer:/blocks/{i}/fields/{j}/text]",
                                MAX_FIELD_TEXT + 1
                            ));
                        }
                    }
                }
            }
            "header" if text_of(block.get("text")) > MAX_HEADER_TEXT => {
                errors.push(format!(
                    "must be less than {} characters [json-pointer:/blocks/{i}/text/text]",
                    MAX_HEADER_TEXT + 1
                ));
            }
            "markdown" => {
                let n = chars(block.get("text"));
                markdown_total += n;
                if n > MAX_MARKDOWN_TEXT || markdown_total > MAX_MARKDOWN_TEXT {
                    errors.push(format!(
                        "markdown text must be less than {} characters in total [json-pointer:/blocks/{i}/text]",
                        MAX_MARKDOWN_TEXT + 1
                    ));
                }
            }
            "actions" | "context" => {
                let limit = if kind == "actions" {
                    MAX_ACTIONS_ELEMENTS
                } else {
                    MAX_CONTEXT_ELEMENTS
                };
                match block.get("elements").and_then(Value::as_array) {
                    None => errors.push(format!("missing required field: elements {at}")),
                    Some(e) if e.is_empty() => {
                        errors.push(format!("must provide at least one element {at}"))
                    }
                    Some(e) if e.len() > limit => errors.push(format!(
                        "no more than {limit} items allowed [json-pointer:/blocks/{i}/elements]"
                    )),
                    Some(_) => {}
                }
            }
            _ => {}
        }
    }
    if !errors.is_empty() {
        return Err(BlocksError {
            code: "invalid_blocks",
            errors,
        });
    }
    if surface == Surface::Message && total_text(blocks) > MAX_MESSAGE_BLOCK_TEXT {
        return Err(BlocksError {
            code: "msg_blocks_too_long",
            errors: vec![format!(
                "blocks carry more than {MAX_MESSAGE_BLOCK_TEXT} characters of text"
            )],
        });
    }
    Ok(())
}

/// All the text a person would read in the blocks.
fn total_text(v: &Value) -> usize {
    match v {
        Value::Array(a) => a.iter().map(total_text).sum(),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) if k == "text" => s.chars().count(),
                _ => total_text(v),
            })
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn section(n: usize) -> Value {
        json!({"type": "section", "text": {"type": "mrkdwn", "text": "x".repeat(n)}})
    }

    #[test]
    fn limits() {
        assert!(validate(&json!([section(3000)]), Surface::Message).is_ok());
        assert_eq!(
            validate(&json!([section(3001)]), Surface::Message)
                .unwrap_err()
                .code,
            "invalid_blocks"
        );
        let fifty_one: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
        assert!(validate(&json!(fifty_one), Surface::Message).is_err());
        assert!(validate(&json!(fifty_one), Surface::View).is_ok());
        let button = json!({"type": "button", "text": {"type": "plain_text", "text": "b"}});
        let many: Vec<Value> = (0..26).map(|_| button.clone()).collect();
        assert!(
            validate(
                &json!([{"type": "actions", "elements": many}]),
                Surface::Message
            )
            .is_err()
        );
        assert_eq!(
            validate(&json!({"a": 1}), Surface::Message)
                .unwrap_err()
                .code,
            "invalid_blocks_format"
        );
        let long: Vec<Value> = (0..5).map(|_| section(2900)).collect();
        assert_eq!(
            validate(&json!(long), Surface::Message).unwrap_err().code,
            "msg_blocks_too_long"
        );
    }
}
