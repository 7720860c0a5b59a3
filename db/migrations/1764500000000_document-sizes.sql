-- Up Migration

-- Each document row's size as JSON text (content plus metadata), kept by the
-- database itself. Listings choose their page by a running sum of it, in SQL,
-- so a service never fetches more JSON than one page's byte budget, or one
-- row when that alone is larger. (A row's content may be 1 MiB: a listing of
-- full rows could exhaust a service's small heap, or pass gRPC's 4 MiB limit.)
--
-- jsonb's text form is what a client receives, so the size is exact. ADD
-- COLUMN rewrites the tables without firing row triggers, so the append-only
-- triggers of document_versions do not refuse it; new versions get their size
-- computed on INSERT like any generated column (the filing trigger names
-- its columns). Table-level SELECT grants cover the new columns. Row images
-- in the documents' audit events (to_jsonb of the row) now include the size.
ALTER TABLE documents
  ADD COLUMN body_bytes integer GENERATED ALWAYS AS (octet_length(content::text) + octet_length(metadata::text)) STORED;

ALTER TABLE document_versions
  ADD COLUMN body_bytes integer GENERATED ALWAYS AS (octet_length(content::text) + octet_length(metadata::text)) STORED;

COMMENT ON COLUMN documents.body_bytes IS
  'octet_length of content and metadata as jsonb text: ListDocuments pages by a running sum of it';
COMMENT ON COLUMN document_versions.body_bytes IS
  'octet_length of content and metadata as jsonb text: ListDocumentVersions pages by a running sum of it';

-- Down Migration
