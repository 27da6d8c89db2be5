/**
 * An Ansible inventory cannot make regen expand or compare without bound: nested ranges are counted before they
 * are expanded, and a host listed many times is de-duplicated in linear time.
 */
import { describe, expect, it } from 'vitest';
import { MAX_EXPANDED_HOSTS, countHostPattern, expandHostPattern, parseAnsibleIni } from '../../adapters/inventory/ansible.js';

describe('Ansible INI ranges and duplicates', () => {
  it('nested ranges are counted, and refused past the bound before any name is made', () => {
    expect(countHostPattern('h[0:999]x[0:999]')).toBe(1_000_000);
    expect(() => expandHostPattern('h[0:999]x[0:999]')).toThrow(`expands to more than ${MAX_EXPANDED_HOSTS} host names`);
    expect(expandHostPattern('mail[1:3]-[a:b]')).toEqual(['mail1-a', 'mail1-b', 'mail2-a', 'mail2-b', 'mail3-a', 'mail3-b']);
  });

  it('a file whose ranges add up past the bound is refused with the line', () => {
    const text = ['[serviceDiscoverServers]', 'a[0:9999].example.com', 'b[0:9].example.com', ''].join('\n');
    expect(() => parseAnsibleIni(text, 'inv.ini')).toThrow(/inv\.ini.*line 3|line 3.*inv\.ini|more than 10000 host names/s);
  });

  it('the same host listed 10 000 times in a group is one member', () => {
    const text = ['[mta]', ...Array.from({ length: 10_000 }, () => 'mail1.example.com'), ''].join('\n');
    const parsed = parseAnsibleIni(text, 'inv.ini');
    expect(parsed.groups.get('mta')?.hosts).toEqual(['mail1.example.com']);
  });

  it('9 000 distinct hosts in one group are all members, in order', () => {
    const text = ['[mta]', 'm[0:8999].example.com', 'm5.example.com', ''].join('\n');
    const hosts = parseAnsibleIni(text, 'inv.ini').groups.get('mta')?.hosts ?? [];
    expect([hosts.length, hosts[0], hosts[8999]]).toEqual([9000, 'm0.example.com', 'm8999.example.com']);
  });
});
