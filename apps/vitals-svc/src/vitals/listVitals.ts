import { vitalsV1 } from '@clinical/contracts';
import { InvalidArgumentError, NotFoundError } from '@clinical/errors';
import { accessEventsOf, FieldValidator, readFromReplica, fitPage, pageSizeOf, type Cursor, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import { siteFilter } from './patientAccess.js';
import { rangeFingerprint, validateTimeRange } from './timeRange.js';
import { toVitalSigns } from './vitalRecord.js';
import { patientIsVisible, selectVitalsPage, type PageCursor } from './vitalsQueries.js';

const PAGE = { defaultSize: 100, maxSize: 1_000 };
/** More than a reading without device_data takes encoded (ids, a date, two times, four numbers). */
const READING_WITHOUT_DEVICE_DATA_BOUND_BYTES = 512;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// to_char(measurement_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), e.g. '2024-05-01 10:00:00.123456'.
const TIMESTAMP_TEXT = /^\d{4,}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$/;

/**
 * The position a decoded page token carries: [measurement time, vital id].
 * The kit's codec has checked the token's seal; its shape is checked here
 * again before it reaches SQL.
 */
function pageCursorOf(cursor: Cursor): PageCursor {
  const [measurementTime, vitalId, ...rest] = cursor;
  if (
    rest.length > 0 ||
    typeof measurementTime !== 'string' ||
    !TIMESTAMP_TEXT.test(measurementTime) ||
    typeof vitalId !== 'string' ||
    !UUID.test(vitalId)
  ) {
    throw new InvalidArgumentError({ field: 'page_token', description: 'is not a page token issued by this service' });
  }
  return { measurementTime, vitalId };
}

/**
 * ListVitals: a patient's readings in [start_time, end_time), newest first,
 * in keyset pages over vital_signs_patient_time_idx (never OFFSET). The page
 * token (the kit's `runtime.pageTokens`) is bound to the patient and range it
 * was issued for. One access event per call (the patient whose readings were read).
 */
export function listVitalsHandler(runtime: ServiceRuntime) {
  return async function listVitals(
    request: vitalsV1.ListVitalsRequest,
    context: HandlerContext,
  ): Promise<vitalsV1.ListVitalsResponse> {
    const v = new FieldValidator();
    v.uuid('patient_id', request.patientId);
    const range = validateTimeRange(v, request.startTime, request.endTime);
    if (request.pageSize < 0) {
      v.add('page_size', 'must not be negative');
    }
    v.throwIfInvalid();
    const pageSize = pageSizeOf(request.pageSize, PAGE);
    const patientId = request.patientId.toLowerCase();
    const filters = rangeFingerprint(patientId, range);
    const token = runtime.pageTokens.decode(request.pageToken, filters);
    const cursor = token ? pageCursorOf(token) : undefined;

    const sites = siteFilter(context.principal);
    const { rows, visible } = await readFromReplica(runtime, context, async (db) => {
      const page = await selectVitalsPage(db, patientId, sites, range, cursor, pageSize);
      return { rows: page, visible: page.length > 0 || (await patientIsVisible(db, patientId, sites)) };
    });
    if (!visible) {
      throw new NotFoundError('patient', patientId);
    }
    // A page also ends before the reading that would take the response past what a client accepts:
    // only device_data can make readings large, so pages without it are not measured.
    const fitted = fitPage(rows.slice(0, pageSize), toVitalSigns, vitalsV1.VitalSigns, {
      upperBound: (row) => (row.data_batch === null ? READING_WITHOUT_DEVICE_DATA_BOUND_BYTES : Number.POSITIVE_INFINITY),
    });
    const last = fitted.rows[fitted.rows.length - 1];
    const nextPageToken =
      (rows.length > pageSize || fitted.trimmed) && last ? runtime.pageTokens.encode([last.cursor_time, last.vital_id], filters) : '';

    runtime.accessRecorder.record(accessEventsOf(context, [{ entityType: 'vital_signs', entityId: patientId, patientId }]));
    return { readings: fitted.messages, nextPageToken };
  };
}
