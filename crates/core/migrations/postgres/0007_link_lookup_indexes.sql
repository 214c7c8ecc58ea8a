-- Two-way flows look every delivered write up by its target id alone (`link_into`: was this
-- change our own echo?) and the console looks ids up on either side. `links_target` leads with
-- the target's name, which those lookups only know as a `LIKE 'connector/%'` prefix, so each one
-- scanned every link: a cost per write that grew with everything ever written.
CREATE INDEX links_target_id ON links (target_id);
CREATE INDEX links_source_id ON links (source_id);
