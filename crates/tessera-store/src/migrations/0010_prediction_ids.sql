-- Each inference answer carries a prediction id (time-sortable, unique);
-- its usage record keeps it, so feedback and drift can join to it later.
-- Empty for records written before this version and for refused requests.
ALTER TABLE usage_records ADD COLUMN prediction_id TEXT NOT NULL DEFAULT '';
CREATE INDEX usage_by_prediction ON usage_records (prediction_id);
