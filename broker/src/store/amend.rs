//! What a RECALL or EDIT event does to the messages it changes, the same in every
//! store: each store reads the target (and, for a recall, its earlier edits) its own
//! way and writes the results atomically with the event.

use quip_protocol::pb;

use super::{AmendChange, StoreError};

/// Rewrites `target` as `change` makes it: an edit replaces the text and stamps
/// `edited_at_ms`; a recall marks it recalled by whom and drops its content. A target
/// already recalled is refused (an edit racing a recall never brings text back).
pub(crate) fn rewrite_target(
    target: &mut pb::Message,
    change: &AmendChange,
    now_ms: u64,
) -> Result<(), StoreError> {
    if target.recalled {
        return Err(StoreError::Conflict(
            "the message was already recalled".into(),
        ));
    }
    match change {
        AmendChange::Edit { text } => {
            target.content = Some(pb::message::Content::Text(text.clone()));
            target.edited_at_ms = now_ms;
        }
        AmendChange::Recall { by } => {
            target.recalled = true;
            target.recalled_by = by.clone();
            target.content = None;
        }
    }
    Ok(())
}

/// An earlier EDIT event of a recalled message loses the text it carried.
pub(crate) fn erase_edit_text(edit: &mut pb::Message) {
    if let Some(pb::message::Content::Amendment(amendment)) = &mut edit.content {
        amendment.text = None;
    }
}
