#!/usr/bin/env python3
"""A client in another language: calls every service once over the wire, from Python.

It uses nothing of this repository but the contracts' descriptor set
(libs/contracts/descriptor/clinical.binpb), from which it builds the message
classes at run time, and generic gRPC calls by method path. What it proves:
the services speak plain gRPC (unary and client streaming, status codes,
details in trailers) to a client that shares no code with them.

Needs Python 3 with grpcio and protobuf (Debian: apt-get install python3-grpcio).
Against `npm start`:

    python3 tools/interop/python_client.py \
      --token "$(npm run -s token -- --roles coordinator --sites SITE-PY)" \
      --admin-token "$(npm run -s token -- --roles auditor,admin --sites '*')"

Exit code 0 when every step answered as expected; each step prints one line.
"""
import argparse
import datetime
import sys
import uuid
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, struct_pb2

DESCRIPTOR_SET = Path(__file__).resolve().parents[2] / 'libs/contracts/descriptor/clinical.binpb'
PORTS = {'patient': 50051, 'vitals': 50052, 'audit': 50053, 'analytics': 50054}


def load_pool():
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(DESCRIPTOR_SET.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return pool


class Services:
    """Generic calls by full method name, with messages built from the descriptors."""

    def __init__(self, host, pool):
        self.pool = pool
        # protobuf 3.x (Debian 12) has MessageFactory; 4.x and later GetMessageClass.
        self.factory = message_factory.MessageFactory(pool) if not hasattr(message_factory, 'GetMessageClass') else None
        self.channels = {area: grpc.insecure_channel(f'{host}:{port}') for area, port in PORTS.items()}

    def _message_class(self, descriptor):
        if self.factory:
            return self.factory.GetPrototype(descriptor)
        return message_factory.GetMessageClass(descriptor)

    def call(self, service, method, request, token, stream=False):
        """request: a dict in proto3 JSON form (a list of them for a client stream)."""
        described = self.pool.FindServiceByName(service).FindMethodByName(method)
        request_class = self._message_class(described.input_type)
        response_class = self._message_class(described.output_type)
        channel = self.channels.get(service.split('.')[1], self.channels['patient'])
        path = f'/{service}/{method}'
        options = dict(request_serializer=lambda message: message.SerializeToString(),
                       response_deserializer=response_class.FromString)
        metadata = (('authorization', f'Bearer {token}'),)
        if stream:
            messages = [json_format.ParseDict(item, request_class()) for item in request]
            return channel.stream_unary(path, **options)(iter(messages), metadata=metadata, timeout=30)
        return channel.unary_unary(path, **options)(json_format.ParseDict(request, request_class()), metadata=metadata, timeout=30)

    def call_with_bytes(self, service, method, request_bytes, token):
        """A unary call whose request is sent as the bytes given."""
        described = self.pool.FindServiceByName(service).FindMethodByName(method)
        channel = self.channels.get(service.split('.')[1], self.channels['patient'])
        call = channel.unary_unary(f'/{service}/{method}', request_serializer=lambda data: data,
                                   response_deserializer=self._message_class(described.output_type).FromString)
        return call(request_bytes, metadata=(('authorization', f'Bearer {token}'),), timeout=30)


def varint(value):
    out = bytearray()
    while value > 0x7f:
        out.append((value & 0x7f) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(field, data):
    return varint(field << 3 | 2) + varint(len(data)) + data


def struct_in_order(entries):
    """A google.protobuf.Struct's bytes with its entries in exactly this order on the wire."""
    out = b''
    for key, value in entries:
        one = struct_pb2.Struct()
        one.update({key: value})
        out += one.SerializeToString()  # a map is a repeated field: encoded entries concatenate
    return out


class Steps:
    def __init__(self):
        self.failures = 0

    def check(self, what, ok, detail=''):
        print(f"{'ok  ' if ok else 'FAIL'} {what}{': ' + detail if detail else ''}")
        if not ok:
            self.failures += 1

    def expect_status(self, what, code, thunk):
        try:
            thunk()
        except grpc.RpcError as error:
            self.check(what, error.code() == code, f'{error.code().name} {error.details()}')
            return
        self.check(what, False, f'answered, expected {code.name}')


def timestamp(moment):
    return moment.isoformat(timespec='milliseconds').replace('+00:00', 'Z')


def run(services, token, admin_token):
    steps = Steps()
    now = datetime.datetime.now(datetime.timezone.utc)
    site = 'SITE-PY'
    subject = f'PY-{uuid.uuid4().hex[:10]}'
    patient = {'subjectNumber': subject, 'siteId': site, 'protocolId': 'PY-PROTOCOL',
               'enrollmentDate': {'year': now.year, 'month': now.month, 'day': now.day}}

    health = services.call('grpc.health.v1.Health', 'Check', {}, token)
    steps.check('grpc.health.v1.Health/Check', health.status == 1, str(health.status))

    created = services.call('clinical.patient.v1.PatientService', 'CreatePatient', {'patient': patient}, token).patient
    steps.check('PatientService/CreatePatient', bool(created.patient_id) and created.subject_number == subject)
    fetched = services.call('clinical.patient.v1.PatientService', 'GetPatient', {'patientId': created.patient_id}, token).patient
    steps.check('PatientService/GetPatient returns what was created', fetched.etag == created.etag)
    steps.expect_status('PatientService/CreatePatient with the same subject number', grpc.StatusCode.ALREADY_EXISTS,
                        lambda: services.call('clinical.patient.v1.PatientService', 'CreatePatient', {'patient': patient}, token))
    steps.expect_status('PatientService/GetPatient with a malformed id', grpc.StatusCode.INVALID_ARGUMENT,
                        lambda: services.call('clinical.patient.v1.PatientService', 'GetPatient', {'patientId': 'not-a-uuid'}, token))
    steps.expect_status('PatientService/GetPatient without a token', grpc.StatusCode.UNAUTHENTICATED,
                        lambda: services.call('clinical.patient.v1.PatientService', 'GetPatient', {'patientId': created.patient_id}, 'x'))

    document = services.call('clinical.patient.v1.DocumentService', 'CreateDocument', {'document': {
        'patientId': created.patient_id, 'documentType': 'DOCUMENT_TYPE_CONSENT', 'title': 'Consent',
        'content': {'signed': True}, 'metadata': {'language': 'en'}}}, token).document
    listed = services.call('clinical.patient.v1.DocumentService', 'ListDocuments',
                           {'patientId': created.patient_id, 'contentFilter': {'signed': True}}, token)
    steps.check('DocumentService/CreateDocument and ListDocuments by containment',
                [item.document_id for item in listed.documents] == [document.document_id])

    reading = {'patientId': created.patient_id, 'measurementTime': timestamp(now), 'systolicBp': 120, 'diastolicBp': 80}
    recorded = services.call('clinical.vitals.v1.VitalsService', 'RecordVitals', {'reading': reading}, token).reading
    steps.check('VitalsService/RecordVitals', bool(recorded.vital_id))

    # RecordVitalsRequest { reading (1) { ..., device_data (9) }, request_id (2) }, written byte by byte so
    # that device_data's entries go on the wire in the order chosen here.
    reading_class = services._message_class(services.pool.FindMessageTypeByName('clinical.vitals.v1.VitalSigns'))
    plain_reading = json_format.ParseDict(dict(reading, measurementTime=timestamp(now - datetime.timedelta(seconds=5))),
                                          reading_class()).SerializeToString()
    request_id = str(uuid.uuid4()).encode()
    device = [('model', 'W-200'), ('serial', 'SN-1'), ('firmware', {'major': 4, 'minor': 2})]

    def record_with_device(entries):
        body = length_delimited(1, plain_reading + length_delimited(9, struct_in_order(entries))) + length_delimited(2, request_id)
        return services.call_with_bytes('clinical.vitals.v1.VitalsService', 'RecordVitals', body, token).reading

    first = record_with_device(device)
    retried = record_with_device(list(reversed(device)))
    steps.check('VitalsService/RecordVitals retried with device_data entries in another wire order', retried.vital_id == first.vital_id)
    steps.expect_status('VitalsService/RecordVitals retried with other device_data', grpc.StatusCode.INVALID_ARGUMENT,
                        lambda: record_with_device([('model', 'W-300')] + device[1:]))
    readings = [{'patientId': created.patient_id, 'heartRate': 60 + index % 40,
                 'measurementTime': timestamp(now - datetime.timedelta(seconds=index + 1))} for index in range(3000)]
    chunks = [{'readings': readings[start:start + 500]} for start in range(0, len(readings), 500)]
    chunks[0]['requestId'] = str(uuid.uuid4())
    streamed = services.call('clinical.vitals.v1.VitalsService', 'StreamVitals', chunks, token, stream=True)
    steps.check('VitalsService/StreamVitals (client stream of 6 messages)', streamed.accepted_count == 3000)
    again = services.call('clinical.vitals.v1.VitalsService', 'StreamVitals', chunks, token, stream=True)
    steps.check('VitalsService/StreamVitals retried with its request_id', again.accepted_count == 3000)
    bad = [{'readings': [dict(reading, heartRate=999)]}]
    steps.expect_status('VitalsService/StreamVitals with an impossible heart rate', grpc.StatusCode.INVALID_ARGUMENT,
                        lambda: services.call('clinical.vitals.v1.VitalsService', 'StreamVitals', bad, token, stream=True))
    summary = services.call('clinical.vitals.v1.VitalsService', 'SummarizeVitals', {
        'patientId': created.patient_id, 'startTime': timestamp(now - datetime.timedelta(days=1)),
        'endTime': timestamp(now + datetime.timedelta(seconds=1))}, token)
    steps.check('VitalsService/SummarizeVitals counts the stream once', summary.heart_rate.count == 3000)

    trail = services.call('clinical.audit.v1.AuditService', 'ListAuditEvents',
                          {'patientId': created.patient_id, 'pageSize': 100}, admin_token)
    steps.check('AuditService/ListAuditEvents for the patient', len(trail.events) > 0, f'{len(trail.events)} events')
    steps.expect_status('AuditService/ListAuditEvents as a coordinator', grpc.StatusCode.PERMISSION_DENIED,
                        lambda: services.call('clinical.audit.v1.AuditService', 'ListAuditEvents', {}, token))

    services.call('clinical.analytics.v1.AnalyticsService', 'RefreshAnalytics', {}, admin_token)
    figures = services.call('clinical.analytics.v1.AnalyticsService', 'GetSiteAnalytics',
                            {'siteId': site, 'protocolId': 'PY-PROTOCOL'}, admin_token).site_analytics
    steps.check('AnalyticsService/RefreshAnalytics then GetSiteAnalytics', figures.patient_count >= 1 and figures.total_vitals >= 3001)
    return steps.failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--token', required=True, help='roles coordinator, sites SITE-PY')
    parser.add_argument('--admin-token', required=True, help='roles auditor and admin, every site')
    arguments = parser.parse_args()
    failures = run(Services(arguments.host, load_pool()), arguments.token, arguments.admin_token)
    sys.exit(1 if failures else 0)


if __name__ == '__main__':
    main()
