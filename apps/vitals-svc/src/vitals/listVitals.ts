import type { vitalsV1 } from '@clinical/contracts';
import { NotFoundError } from '@clinical/errors';
import { accessEventsOf, FieldValidator, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import { siteFilter } from './patientAccess.js';
import type { PageCursor, PageTokenCodec } from './pageToken.js';
import { rangeFingerprint, validateTimeRange } from './timeRange.js';
import { toVitalSigns } from './vitalRecord.js';
import { patientIsVisible, selectVitalsPage } from './vitalsQueries.js';

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1_000;

/**
 * ListVitals: a patient's readings in [start_time, end_time), newest first,
 * in keyset pages over vital_signs_patient_time_idx (never OFFSET). The page
 * token is bound to the patient and range it was issued for. One access
 * event per call (the patient whose readings were read).
 */
export function listVitalsHandler(runtime: ServiceRuntime, pageTokens: PageTokenCodec) {
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
    const patientId = request.patientId.toLowerCase();
    const filters = rangeFingerprint(patientId, range);
    const cursor: PageCursor | undefined = request.pageToken ? pageTokens.decode(request.pageToken, filters) : undefined;
    const pageSize = Math.min(request.pageSize || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);

    const sites = siteFilter(context.principal);
    const rows = await selectVitalsPage(runtime.pool, patientId, sites, range, cursor, pageSize);
    if (rows.length === 0 && !(await patientIsVisible(runtime.pool, patientId, sites))) {
      throw new NotFoundError('patient', patientId);
    }
    const page = rows.slice(0, pageSize);
    const last = page[page.length - 1];
    const nextPageToken =
      rows.length > pageSize && last ? pageTokens.encode({ measurementTime: last.cursor_time, vitalId: last.vital_id }, filters) : '';

    runtime.accessRecorder.record(accessEventsOf(context, [{ entityType: 'vital_signs', entityId: patientId, patientId }]));
    return { readings: page.map(toVitalSigns), nextPageToken };
  };
}
