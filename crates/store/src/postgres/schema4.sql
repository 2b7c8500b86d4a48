-- Version 4: payloads are bytes. An ingested body need not be UTF-8 (a
-- Latin-1 XML order, a binary body); it is stored and delivered as received.
ALTER TABLE messages ALTER COLUMN payload TYPE BYTEA USING convert_to(payload, 'UTF8');
