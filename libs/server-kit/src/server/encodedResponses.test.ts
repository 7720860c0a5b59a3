import { patientV1 } from '@clinical/contracts';
import { describe, expect, it } from 'vitest';
import { withEncodedResponses, withEncoding } from './encodedResponses.js';

describe('withEncodedResponses', () => {
  const { responseType } = withEncodedResponses(patientV1.PatientServiceDefinition).methods.getPatient;
  const patient = patientV1.Patient.fromPartial({ patientId: 'p-1', siteId: 'SITE-A' });

  it('sends the bytes of a response given with its encoding, neither copied nor encoded again', () => {
    const bytes = new Uint8Array([1, 2, 3]);
    const response = withEncoding({ patient }, bytes);
    expect(responseType.fromPartial(response)).toBe(response);
    expect(responseType.encode(response).finish()).toBe(bytes);
  });

  it('encodes any other response as the generated type does', () => {
    const expected = patientV1.GetPatientResponse.encode({ patient }).finish();
    expect(responseType.encode(responseType.fromPartial({ patient })).finish()).toEqual(expected);
  });
});
