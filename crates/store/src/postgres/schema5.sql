-- Version 5: a source's retired verification secrets get a column of their
-- own (they were kept in its config under `retiredSecrets`; such rows are
-- migrated when read, see rows::source_from_row). SQLite has it as version 5.
ALTER TABLE sources ADD COLUMN retired_secrets TEXT NOT NULL DEFAULT '[]';
