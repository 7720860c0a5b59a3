-- Up Migration

-- ---------------------------------------------------------------------------
-- The size of each audit event's payload, stored with the event, so that
-- ListAuditEvents can choose a page by bytes (a running sum in the keyset
-- order) without fetching, detoasting or sending the payloads it leaves out.
-- An event about a document carries its old and new content (up to 1 MiB
-- each): a page of 100 such events would be hundreds of MiB in audit-svc.
--
-- payload_bytes is the length in bytes of the payload's jsonb text form, the
-- form the services receive it in.
--
-- Safe for what protects the trail:
-- - The hash chain: audit_event_content_hash() takes explicit columns, and
--   the sealer, the verification and the purge pass them by name; a new
--   column changes no content hash, and is itself derived from payload,
--   which is hashed.
-- - Append-only: adding a stored generated column rewrites the table (under
--   an ACCESS EXCLUSIVE lock, for the duration of the migration), which fires
--   no row or statement trigger: the UPDATE/DELETE/TRUNCATE refusals are not
--   involved. Nobody can UPDATE the column afterwards (it is generated, and
--   UPDATE is refused anyway).
-- - Grants: the services' grants on audit_events are table-wide (SELECT for
--   audit-svc, INSERT for the others), so they cover the new column; an
--   INSERT never names a generated column.
-- ---------------------------------------------------------------------------
ALTER TABLE audit_events
  ADD COLUMN payload_bytes integer GENERATED ALWAYS AS (octet_length(payload::text)) STORED;

COMMENT ON COLUMN audit_events.payload_bytes IS
  'octet_length(payload::text): ListAuditEvents pages by a running sum of it';

-- Down Migration
