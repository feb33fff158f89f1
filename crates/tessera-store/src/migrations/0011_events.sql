-- Events (F4): a plan's events-per-minute limit (NULL: unlimited), and per
-- tenant how many inferences leave a prediction record (0.0-1.0) and
-- whether those records keep the input text (it may be personal data).
ALTER TABLE plans ADD COLUMN events_per_minute BIGINT;
ALTER TABLE tenants ADD COLUMN prediction_sample_rate DOUBLE PRECISION NOT NULL DEFAULT 1.0;
ALTER TABLE tenants ADD COLUMN store_inputs BOOLEAN NOT NULL DEFAULT FALSE;
