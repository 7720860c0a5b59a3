import { patientV1 } from '@clinical/contracts';
import {
  accessEventsOf,
  accessibleSites,
  FieldValidator,
  fitPage,
  pageSizeOf,
  readFromReplica,
  type HandlerContext,
  type ServiceRuntime,
} from '@clinical/server-kit';
import { listPatients, type PatientListFilters } from './patientQueries.js';
import { statusToName, toPatientMessage } from './patientRecord.js';

const PAGE = { defaultSize: 50, maxSize: 500 };

function filtersOf(v: FieldValidator, request: patientV1.ListPatientsRequest): PatientListFilters {
  v.string('site_id', request.siteId, { max: 50 });
  v.string('protocol_id', request.protocolId, { max: 50 });
  const status = statusToName.get(request.status);
  if (!status && request.status !== patientV1.PatientStatus.PATIENT_STATUS_UNSPECIFIED) {
    v.add('status', 'has an unsupported value');
  }
  const enrolledOnOrAfter = v.date('enrolled_on_or_after', request.enrolledOnOrAfter, {});
  const enrolledOnOrBefore = v.date('enrolled_on_or_before', request.enrolledOnOrBefore, {});
  if (enrolledOnOrAfter && enrolledOnOrBefore && enrolledOnOrAfter > enrolledOnOrBefore) {
    v.add('enrolled_on_or_before', 'must not be before enrolled_on_or_after');
  }
  return {
    siteId: request.siteId || undefined,
    protocolId: request.protocolId || undefined,
    status,
    enrolledOnOrAfter,
    enrolledOnOrBefore,
  };
}

/**
 * ListPatients: a keyset page of the patients at the caller's sites that
 * match the filters, newest enrollment first. A site filter outside the
 * caller's sites simply matches nothing. Each patient returned is an access event.
 */
export function listPatientsHandler(runtime: ServiceRuntime) {
  return async function listPatientsCall(
    request: patientV1.ListPatientsRequest,
    context: HandlerContext,
  ): Promise<patientV1.ListPatientsResponse> {
    const v = new FieldValidator();
    const filters = filtersOf(v, request);
    v.throwIfInvalid();
    const pageSize = pageSizeOf(request.pageSize, PAGE);
    const cursor = runtime.pageTokens.decode(request.pageToken, filters);

    const rows = await readFromReplica(runtime, context, (db) =>
      listPatients(db, {
        filters,
        sites: accessibleSites(context.principal),
        after: cursor ? { enrollmentDate: String(cursor[0]), patientId: String(cursor[1]) } : undefined,
        limit: pageSize + 1,
      }),
    );
    // A page also ends before the patient that would take the response past what a client accepts.
    const fitted = fitPage(rows.slice(0, pageSize), toPatientMessage, patientV1.Patient);
    const page = fitted.rows;
    const last = page[page.length - 1];
    runtime.accessRecorder.record(
      accessEventsOf(
        context,
        page.map((row) => ({ entityType: 'patient', entityId: row.patient_id, patientId: row.patient_id })),
      ),
    );
    return {
      patients: fitted.messages,
      nextPageToken: (rows.length > pageSize || fitted.trimmed) && last ? runtime.pageTokens.encode([last.enrollment_date, last.patient_id], filters) : '',
    };
  };
}
