import { describe, expect, it } from 'vitest';
import { clientIpOf } from './requestContext.js';

describe('clientIpOf', () => {
  it.each([
    ['127.0.0.1:54321', '127.0.0.1'],
    ['ipv4:10.1.2.3:5000', '10.1.2.3'],
    ['[::1]:5000', '::1'],
    ['ipv6:[2001:db8::7]:443', '2001:db8::7'],
    ['[::ffff:127.0.0.1]:80', '::ffff:127.0.0.1'],
    ['unix:/tmp/socket', undefined],
    ['', undefined],
  ])('reads %j as %j', (peer, ip) => {
    expect(clientIpOf({ peer })).toBe(ip);
  });
});
