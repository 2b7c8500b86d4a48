-- Version 9: FIFO endpoints. A delivery made for one carries fifo = 1, and
-- is claimed only when no earlier FIFO delivery of its endpoint is pending
-- or being sent; the partial index keeps that check to the endpoint's open
-- FIFO deliveries, and leaves every other delivery out of it.
ALTER TABLE endpoints ADD COLUMN fifo INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN fifo INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deliveries_fifo_open ON deliveries (endpoint_id, msg_id) WHERE fifo = 1 AND status IN (1, 3);
