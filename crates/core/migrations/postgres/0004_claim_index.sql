-- Claims walk a flow's pending rows in id order and stop at the batch size. Without this index
-- the walk starts at the flow's first row, delivered ones included, so each claim cost grew with
-- everything ever delivered (5 ms per claim behind 30,000 delivered rows; 0.15 ms with it).
CREATE INDEX outbox_claim ON outbox (flow, status, id);
