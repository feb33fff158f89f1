-- A model version may read features from the feature store: its binding
-- (the features in input order, the entity join keys, the policy for a
-- missing feature) as JSON; NULL for a version that reads none.
ALTER TABLE model_versions ADD COLUMN features TEXT;
