-- Version 9: FIFO endpoints. A delivery made for one carries fifo, and is
-- claimed only when no earlier FIFO delivery of its endpoint is pending or
-- being sent; the partial index keeps that check to the endpoint's open
-- FIFO deliveries, and leaves every other delivery out of it. SQLite has it
-- as version 9.
ALTER TABLE endpoints ADD COLUMN fifo BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE deliveries ADD COLUMN fifo BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX deliveries_fifo_open ON deliveries (endpoint_id, msg_id) WHERE fifo AND status IN (1, 3);
