import { copyOutRows } from '@clinical/db';
import { createTestDatabase, testServices, type TestDatabase } from '@clinical/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventContentDigest } from './eventContentDigest.js';

let database: TestDatabase;
let owner: pg.Client;

beforeAll(async () => {
  const { postgresUrl, templateDatabase } = testServices();
  database = await createTestDatabase(postgresUrl, templateDatabase);
  owner = new pg.Client({ connectionString: database.url });
  await owner.connect();
});

afterAll(async () => {
  await owner?.end();
  await database?.drop();
});

/** Columns as the verification's COPY sends them (see scanChainSlice), then PostgreSQL's own content hash. */
const EVENT_COLUMNS = `e.event_id, e.event_seq, e.event_type, e.entity_type, e.entity_id, e.entity_key, e.patient_id, e.user_id,
  e.action, e.payload, e.ip_address::text, e."timestamp", e.request_id, e.trace_id, e.reason, e.db_role`;

/** For each event whose user_id starts with `prefix`: the digest computed here and PostgreSQL's, in hex. */
async function bothDigests(prefix: string): Promise<{ user: string; node: string; postgres: string }[]> {
  const digests: { user: string; node: string; postgres: string }[] = [];
  await copyOutRows(
    owner,
    `COPY (SELECT ${EVENT_COLUMNS},
                  audit_event_content_hash(e.event_id, e.event_seq, e.event_type, e.entity_type, e.entity_id, e.entity_key,
                    e.patient_id, e.user_id, e.action, e.payload, e.ip_address, e."timestamp", e.request_id, e.trace_id,
                    e.reason, e.db_role)
             FROM audit_events AS e WHERE starts_with(e.user_id, '${prefix}') ORDER BY e.event_seq) TO STDOUT (FORMAT binary)`,
    17,
    (buffer, starts, lengths) => {
      digests.push({
        user: buffer.toString('utf8', starts[7]!, starts[7]! + lengths[7]!),
        node: Buffer.from(eventContentDigest(buffer, starts, lengths, 0), 'latin1').toString('hex'),
        postgres: buffer.toString('hex', starts[16]!, starts[16]! + lengths[16]!),
      });
    },
  );
  return digests;
}

describe('eventContentDigest', () => {
  it("hashes every kind of value exactly as audit_event_content_hash does in PostgreSQL", async () => {
    // Written as the owner, columns given: the values are what matters here, not the chain.
    await owner.query(`
      INSERT INTO audit_events (event_type, entity_type, entity_id, entity_key, patient_id, user_id, action, payload,
                                ip_address, "timestamp", request_id, trace_id, reason, db_role)
      VALUES
        ('DATA_CHANGE', 'patient', gen_random_uuid(), NULL, gen_random_uuid(), 'digest-nulls', 'UPDATE', '{}', NULL,
         '2026-12-03 10:00:00.123456+00', NULL, NULL, NULL, 'clinical_patient_svc'),
        ('DATA_CHANGE', 'patient', NULL, '', NULL, 'digest-empty', '', '[]', '10.0.0.1', now(), '', '', '', ''),
        ('DATA_ACCESS', 'patient', '00000000-0000-0000-0000-000000000000', 'agent:ü', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
         'digest-unicode Zoë 🚑 ✓', 'READ',
         '{"b": [1, 1.50, -0, 1e3, 123456789012345678901234567890.000001], "a": {"quote": "\\"", "backslash": "\\\\",
           "newline": "\\n", "tab": "\\t", "unicode": "\\u00e9\\u2028", "control": "\\u0001"}, "null": null, "t": true}',
         '::ffff:192.168.0.1', '1999-12-31 23:59:59.999999+00', 'req-\t-1', 'trace', E'why\\x1fnot\\nthis\\ttab \\\\ "x"', 'postgres'),
        ('DATA_ACCESS', 'entity', NULL, NULL, NULL, 'digest-v6', 'READ', '"just a string"', '2001:db8::1/64',
         '1970-01-01 00:00:00+00', NULL, NULL, NULL, 'clinical_audit_svc'),
        ('DATA_ACCESS', 'entity', NULL, NULL, NULL, 'digest-cidr', 'READ', '12.5', '10.0.0.0/8',
         '2000-01-01 00:00:00+00', NULL, NULL, NULL, 'clinical_audit_svc'),
        ('DATA_ACCESS', 'entity', NULL, NULL, NULL, 'digest-past', 'READ', 'null', '::1',
         '1500-03-01 12:00:00.000001+00', NULL, NULL, NULL, 'clinical_audit_svc'),
        ('DATA_ACCESS', 'entity', NULL, NULL, NULL, 'digest-bc', 'READ', 'true', NULL,
         '4713-01-01 00:00:00+00 BC', NULL, NULL, NULL, 'clinical_audit_svc'),
        ('DATA_ACCESS', 'entity', NULL, NULL, NULL, 'digest-future', 'READ', '{}', NULL,
         '100000-01-01 00:00:00.000001+00', NULL, NULL, NULL, 'clinical_audit_svc'),
        ('DATA_ACCESS', 'entity', NULL, NULL, NULL, 'digest-2285', 'READ', '{}', NULL,
         '2285-06-01 00:00:00+00', NULL, NULL, NULL, 'clinical_audit_svc'),
        ('DATA_ACCESS', 'entity', NULL, NULL, NULL, 'digest-1969', 'READ', '{}', NULL,
         '1969-12-31 23:59:59.99999+00', NULL, NULL, NULL, 'clinical_audit_svc'),
        (repeat('T', 50), repeat('E', 50), NULL, repeat('k', 200), NULL, 'digest-long-' || repeat('u', 188), repeat('A', 50),
         jsonb_build_object('document', repeat('long text ', 200000)), NULL, now(), repeat('r', 100), repeat('t', 64),
         repeat('why ', 5000), 'clinical_vitals_svc')
    `);
    const digests = await bothDigests('digest-');
    expect(digests).toHaveLength(11);
    for (const digest of digests) {
      expect({ user: digest.user, digest: digest.node }).toEqual({ user: digest.user, digest: digest.postgres });
    }
  });

  it('hashes event_seq values of every length', async () => {
    // Identity values are event_seq: moved past a few digit counts, one event at each.
    for (const next of [1_000, 99_999_999, 100_000_000, 123_456_789_012_345, 9_007_199_254_740_993n]) {
      await owner.query(`ALTER TABLE audit_events ALTER COLUMN event_seq RESTART WITH ${next}`);
      await owner.query(`INSERT INTO audit_events (event_type, entity_type, user_id, action) VALUES ('X', 'x', 'seq-${next}', 'READ')`);
    }
    const digests = await bothDigests('seq-');
    expect(digests).toHaveLength(5);
    expect(digests.filter((digest) => digest.node !== digest.postgres)).toEqual([]);
  });
});
