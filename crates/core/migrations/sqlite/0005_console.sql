-- The parent's id in the target system (the contact a task or note was written under), so the
-- record view finds a contact's synced tasks and notes.
ALTER TABLE links ADD COLUMN parent_id TEXT;
CREATE INDEX links_parent ON links (parent_id);
-- The record view looks events up by either side's id; the overview counts today's events.
CREATE INDEX events_target ON events (target_id);
CREATE INDEX events_at ON events (at);
