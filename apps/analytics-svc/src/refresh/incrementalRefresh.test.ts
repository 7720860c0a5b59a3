import { analyticsV1 } from '@clinical/contracts';
import { copyRows } from '@clinical/db';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { eventually, expectStatus, lockTable, refreshLog, startAnalyticsService, type AnalyticsTestService } from '../testing/analyticsTestService.js';
import { expectServedFiguresMatchTables } from '../testing/figuresMatchTables.js';
import { insertRandomTrial, insertVitals } from '../testing/trialData.js';

/**
 * Each refresh folds in what changed since the previous one (the queue the
 * writers' statement triggers fill): every kind of change must show after
 * the next refresh, exactly once, whatever order transactions commit in, and
 * the figures must stay those computed from the tables.
 */
let service: AnalyticsTestService;
let admin: analyticsV1.AnalyticsServiceClient;

const SITES = ['INC-1', 'INC-2', 'INC-3'];
const PROTOCOLS = ['P1', 'P2'];

const refresh = () => admin.refreshAnalytics({});
const expectFiguresMatchTables = (label: string) => expectServedFiguresMatchTables(admin, service.admin, label);

async function queuedChanges(): Promise<number> {
  const { rows } = await service.admin.query<{ n: number }>('SELECT count(*)::int AS n FROM analytics_pending_changes');
  return rows[0]!.n;
}

/** What the last successful refresh folded in, from its log row. */
async function lastFold(): Promise<{ folded_changes: number; folded_patients: number; recounted_patients: number; changed_pairs: number; rebuilt: boolean }> {
  const { rows } = await service.admin.query(
    `SELECT folded_changes::int, folded_patients::int, recounted_patients::int, changed_pairs::int, rebuilt
       FROM analytics_refreshes WHERE status = 'SUCCEEDED' ORDER BY refresh_id DESC LIMIT 1`,
  );
  return rows[0];
}

async function figuresOf(siteId: string, protocolId: string): Promise<analyticsV1.SiteAnalytics | undefined> {
  return (await admin.getSiteAnalytics({ siteId, protocolId })).siteAnalytics;
}

/** A patient of `site`/`protocol`, enrolled on `enrolled`, with `readings` readings of known values. */
async function patientWithReadings(site: string, protocol: string, readings: number, enrolled = '2024-05-01'): Promise<string> {
  const { rows } = await service.admin.query<{ patient_id: string }>(
    `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date)
     VALUES ('INC-' || gen_random_uuid(), $1, $2, $3) RETURNING patient_id`,
    [site, protocol, enrolled],
  );
  const patient = rows[0]!.patient_id;
  await insertVitals(
    service.admin,
    Array.from({ length: readings }, (_, index) => ({ patient, systolic: 110 + index, diastolic: 70, heart: 60 + index, temperature: '36.8' })),
  );
  return patient;
}

beforeAll(async () => {
  service = await startAnalyticsService({ ANALYTICS_REFRESH_SCHEDULER: 'off' });
  admin = service.client(analyticsV1.AnalyticsServiceDefinition, await service.token({ sub: 'admin', roles: ['admin'], sites: '*' }));
  await insertRandomTrial(service.admin, { seed: 41, patients: 150, sites: SITES, protocols: PROTOCOLS, maxVitalsPerPatient: 6 });
});

beforeEach(async () => {
  // Every test starts from folded figures: what it changes is all the next refresh has to fold.
  await refresh();
  expect(await queuedChanges()).toBe(0);
});

afterAll(async () => {
  await service?.stop();
});

describe('the incremental refresh', () => {
  it('folds in new readings, inserted by statement or by COPY as vitals-svc ingests them', async () => {
    const patient = await patientWithReadings('INC-1', 'P1', 2);
    const before = await refresh().then(() => figuresOf('INC-1', 'P1'));
    await insertVitals(service.admin, [{ patient, systolic: 150, diastolic: null, heart: 90, temperature: null }]);
    const copied = Array.from({ length: 40 }, (_, index) => `${patient}\t2024-06-01\t2024-06-01T08:${String(index).padStart(2, '0')}:00Z\t120\t80\t70\t37.0\n`);
    await copyRows(service.admin, 'vital_signs', ['patient_id', 'visit_date', 'measurement_time', 'systolic_bp', 'diastolic_bp', 'heart_rate', 'temperature'], copied.join(''));
    // One queued change per statement and patient (its audit event), not per reading.
    expect(await queuedChanges()).toBe(2);
    await refresh();
    expect(Number((await figuresOf('INC-1', 'P1'))!.totalVitals)).toBe(Number(before!.totalVitals) + 41);
    expect(await queuedChanges()).toBe(0);
    // Only the added readings were read: the patient's earlier ones were not counted again.
    expect(await lastFold()).toMatchObject({ folded_changes: 2, folded_patients: 1, recounted_patients: 0, changed_pairs: 1, rebuilt: false });
    await expectFiguresMatchTables('after inserts');
  });

  it('folds in readings a writer audits itself, written where no trigger of vital_signs fires (a child table)', async () => {
    // Bulk ingestion may write a child of vital_signs without triggers, declaring its readings in its own audit events.
    await service.admin.query('CREATE TABLE IF NOT EXISTS vital_signs_untriggered () INHERITS (vital_signs)');
    const patient = await patientWithReadings('INC-2', 'P1', 1);
    await refresh();
    await service.admin.query('BEGIN');
    try {
      await service.admin.query(
        `INSERT INTO audit_events (event_type, entity_type, entity_id, entity_key, patient_id, user_id, action, payload)
         VALUES ('DATA_CHANGE', 'vital_signs', $1::uuid, $1::text, $1::uuid, 'bulk-writer', 'INSERT',
                 jsonb_build_object('count', 30, 'first_measurement_time', timestamptz '2024-07-01 00:00Z',
                                    'last_measurement_time', timestamptz '2024-07-01 00:29Z'))`,
        [patient],
      );
      await service.admin.query(
        `INSERT INTO vital_signs_untriggered (patient_id, measurement_time, systolic_bp, diastolic_bp, heart_rate, temperature)
         SELECT $1, timestamptz '2024-07-01 00:00Z' + make_interval(mins => g), 100 + g, 60 + g, 50 + g, 36.0 + g / 10.0
           FROM generate_series(0, 29) AS g`,
        [patient],
      );
      await service.admin.query('COMMIT');
    } catch (error) {
      await service.admin.query('ROLLBACK');
      throw error;
    }
    await refresh();
    expect(await lastFold()).toMatchObject({ folded_patients: 1, recounted_patients: 0, changed_pairs: 1 });
    await expectFiguresMatchTables('after readings audited by their writer');
  });

  it('folds in corrected readings, one moved to another patient, and deleted readings', async () => {
    const first = await patientWithReadings('INC-2', 'P1', 3);
    const second = await patientWithReadings('INC-3', 'P2', 2);
    await refresh();
    await service.admin.query('UPDATE vital_signs SET systolic_bp = 180, temperature = NULL WHERE patient_id = $1 AND heart_rate = 60', [first]);
    await service.admin.query('UPDATE vital_signs SET patient_id = $2 WHERE patient_id = $1 AND heart_rate = 61', [first, second]);
    await service.admin.query('DELETE FROM vital_signs WHERE patient_id = $1 AND heart_rate = 60', [second]);
    await refresh();
    await expectFiguresMatchTables('after updates and deletes');
  });

  it('folds in a status change, a corrected enrollment date, and a patient moving site and protocol with its readings', async () => {
    const moving = await patientWithReadings('INC-1', 'P2', 4);
    const { rows } = await service.admin.query<{ patient_id: string }>(
      "SELECT patient_id FROM patients WHERE site_id = 'INC-2' AND patient_id <> $1 ORDER BY patient_id LIMIT 3",
      [moving],
    );
    await refresh();
    await service.admin.query("UPDATE patients SET status = 'WITHDRAWN' WHERE patient_id = $1", [rows[0]!.patient_id]);
    await service.admin.query("UPDATE patients SET enrollment_date = date '2021-02-03' WHERE patient_id = $1", [rows[1]!.patient_id]);
    await service.admin.query("UPDATE patients SET site_id = 'INC-3', protocol_id = 'P1', status = 'COMPLETED' WHERE patient_id = $1", [moving]);
    await refresh();
    await expectFiguresMatchTables('after patient changes');
  });

  it('drops a site and protocol when its last patient leaves, and a patient deleted after its readings', async () => {
    const leaving = await patientWithReadings('INC-LONE', 'P9', 2);
    const deleted = await patientWithReadings('INC-GONE', 'P9', 3);
    await refresh();
    expect(await figuresOf('INC-LONE', 'P9')).toBeDefined();
    await service.admin.query("UPDATE patients SET site_id = 'INC-1' WHERE patient_id = $1", [leaving]);
    await service.admin.query('DELETE FROM vital_signs WHERE patient_id = $1', [deleted]);
    await service.admin.query('DELETE FROM patients WHERE patient_id = $1', [deleted]);
    await refresh();
    await expectStatus(admin.getSiteAnalytics({ siteId: 'INC-LONE', protocolId: 'P9' }), Status.NOT_FOUND);
    await expectStatus(admin.getSiteAnalytics({ siteId: 'INC-GONE', protocolId: 'P9' }), Status.NOT_FOUND);
    const { rows } = await service.admin.query('SELECT count(*)::int AS n FROM analytics_patient_figures WHERE patient_id = $1', [deleted]);
    expect(rows[0].n).toBe(0);
    await expectFiguresMatchTables('after patients left');
  });

  it('queues nothing for what the figures do not count, nor for a write that rolled back', async () => {
    await service.admin.query(`UPDATE patients SET demographics = '{"edited": true}', treatment_arm = 'B' WHERE site_id = 'INC-1'`);
    await service.admin.query('BEGIN');
    await patientWithReadings('INC-1', 'P1', 2);
    await service.admin.query('ROLLBACK');
    expect(await queuedChanges()).toBe(0);
  });

  it('takes a change committed late, after one that began later, in the refresh after its commit', async () => {
    const early = new pg.Client({ connectionString: service.database.url });
    await early.connect();
    try {
      const slow = await patientWithReadings('INC-2', 'P2', 1);
      const quick = await patientWithReadings('INC-3', 'P2', 1);
      await refresh();
      const before = { slow: await figuresOf('INC-2', 'P2'), quick: await figuresOf('INC-3', 'P2') };
      // The early transaction writes first (its readings get the earlier ids and times) and commits last.
      await early.query('BEGIN');
      await early.query(
        `INSERT INTO vital_signs (patient_id, measurement_time, systolic_bp, heart_rate) VALUES ($1, now(), 140, 75), ($1, now(), 150, 85)`,
        [slow],
      );
      await early.query("UPDATE patients SET status = 'COMPLETED' WHERE patient_id = $1", [slow]);
      await insertVitals(service.admin, [{ patient: quick, systolic: 125, diastolic: 82, heart: 66, temperature: '36.9' }]);
      await refresh();
      // The later transaction is in; the early one, still open, is not, and its changes stay queued.
      expect(Number((await figuresOf('INC-3', 'P2'))!.totalVitals)).toBe(Number(before.quick!.totalVitals) + 1);
      expect(await figuresOf('INC-2', 'P2')).toEqual(before.slow);
      await expectFiguresMatchTables('with a transaction still open');
      await early.query('COMMIT');
      expect(await queuedChanges()).toBe(2);
      await refresh();
      expect(Number((await figuresOf('INC-2', 'P2'))!.totalVitals)).toBe(Number(before.slow!.totalVitals) + 2);
      await expectFiguresMatchTables('after the late commit');
    } finally {
      await early.end();
    }
  });

  it('leaves a change committed while a refresh runs to the next refresh, neither lost nor counted twice', async () => {
    const patient = await patientWithReadings('INC-1', 'P1', 1);
    await refresh();
    const before = await figuresOf('INC-1', 'P1');
    // The refresh takes its snapshot (its first statement), then waits for the log behind this lock.
    const logLock = await lockTable(service.database.url, 'analytics_refreshes');
    let pending: Promise<analyticsV1.RefreshAnalyticsResponse> | undefined;
    try {
      pending = refresh();
      await eventually(async () => {
        const { rows } = await service.admin.query(
          `SELECT count(*)::int AS waiting FROM pg_stat_activity
            WHERE datname = current_database() AND usename = 'clinical_analytics_svc' AND wait_event_type = 'Lock'`,
        );
        return rows[0].waiting > 0 ? true : undefined;
      });
      await insertVitals(service.admin, [{ patient, systolic: 133, diastolic: 77, heart: 70, temperature: null }]);
    } finally {
      await logLock.release();
    }
    await pending;
    expect(await figuresOf('INC-1', 'P1')).toMatchObject({ totalVitals: before!.totalVitals });
    expect(await queuedChanges()).toBe(1);
    await refresh();
    expect(await figuresOf('INC-1', 'P1')).toMatchObject({ totalVitals: String(Number(before!.totalVitals) + 1) });
    await expectFiguresMatchTables('after a change committed during a refresh');
  });

  it('loses no change when a refresh fails: what it had consumed is queued again', async () => {
    await patientWithReadings('INC-3', 'P1', 3);
    const queued = await queuedChanges();
    await service.admin.query('REVOKE UPDATE ON analytics_site_figures FROM clinical_analytics_svc');
    try {
      await expectStatus(refresh(), Status.UNAVAILABLE);
    } finally {
      await service.admin.query('GRANT UPDATE ON analytics_site_figures TO clinical_analytics_svc');
    }
    expect((await refreshLog(service.admin)).at(-1)).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/SQLSTATE 42501/) });
    expect(await queuedChanges()).toBe(queued);
    await refresh();
    await expectFiguresMatchTables('after a failed refresh');
  });

  it('counts a patient again when its added readings are not what its audit said: a savepoint, a same-transaction edit', async () => {
    const saved = await patientWithReadings('INC-2', 'P2', 2);
    const edited = await patientWithReadings('INC-3', 'P1', 2);
    await refresh();
    await service.admin.query('BEGIN');
    try {
      // Readings written in a savepoint carry the savepoint's transaction id.
      await service.admin.query('SAVEPOINT readings');
      await insertVitals(service.admin, [{ patient: saved, systolic: 141, diastolic: 91, heart: 71, temperature: '37.4' }]);
      await service.admin.query('RELEASE SAVEPOINT readings');
      // Readings added, then corrected, in one transaction.
      await insertVitals(service.admin, [{ patient: edited, systolic: 111, diastolic: 71, heart: 61, temperature: '36.4' }]);
      await service.admin.query('UPDATE vital_signs SET systolic_bp = 190 WHERE patient_id = $1 AND systolic_bp = 111', [edited]);
      await service.admin.query('COMMIT');
    } catch (error) {
      await service.admin.query('ROLLBACK');
      throw error;
    }
    await refresh();
    expect(await lastFold()).toMatchObject({ folded_patients: 2, recounted_patients: 2 });
    await expectFiguresMatchTables('after a savepoint and a same-transaction edit');
  });

  it('takes a malformed audit event as a reason to count the patient again, failing neither the write nor the refresh', async () => {
    const patient = await patientWithReadings('INC-1', 'P1', 2);
    await refresh();
    // Any service may append events: one that says nothing usable about the readings it names.
    await service.admin.query(
      `INSERT INTO audit_events (event_type, entity_type, entity_id, patient_id, user_id, action, payload)
       VALUES ('DATA_CHANGE', 'vital_signs', $1, $1, 'forger', 'INSERT',
               '{"count": "many", "first_measurement_time": "2024-02-31T00:00:00Z", "last_measurement_time": 7}')`,
      [patient],
    );
    expect(await queuedChanges()).toBe(1);
    await refresh();
    expect(await lastFold()).toMatchObject({ folded_patients: 1, recounted_patients: 1, changed_pairs: 0 });
    await expectFiguresMatchTables('after a malformed event');
  });

  it('rebuilds from the tables when asked (after a load with triggers off, after TRUNCATE) and when that costs less', async () => {
    const patient = await patientWithReadings('INC-1', 'P2', 1);
    await refresh();
    // A bulk load as the bench seeds: triggers off, so nothing is queued...
    await service.admin.query("SET session_replication_role = 'replica'");
    try {
      await insertVitals(service.admin, [{ patient, systolic: 170, diastolic: 95, heart: 88, temperature: '38.2' }]);
    } finally {
      await service.admin.query('RESET session_replication_role');
    }
    expect(await queuedChanges()).toBe(0);
    // ...until an operator asks for a rebuild.
    await service.admin.query("INSERT INTO analytics_pending_changes (change) VALUES ('REBUILD')");
    await refresh();
    expect(await lastFold()).toMatchObject({ rebuilt: true });
    await expectFiguresMatchTables('rebuilt after a load with triggers off');

    // A change naming more than a third of the patients costs less recomputed than folded.
    await service.admin.query(`UPDATE patients SET status = CASE status WHEN 'ENROLLED' THEN 'SCREENING' ELSE 'ENROLLED' END`);
    await refresh();
    expect(await lastFold()).toMatchObject({ rebuilt: true });
    await expectFiguresMatchTables('rebuilt after a change to every patient');

    await service.admin.query('TRUNCATE vital_signs');
    await refresh();
    expect(await queuedChanges()).toBe(0);
    await expectFiguresMatchTables('rebuilt after TRUNCATE');
    expect(Number((await figuresOf('INC-1', 'P2'))!.totalVitals)).toBe(0);
  });
});
