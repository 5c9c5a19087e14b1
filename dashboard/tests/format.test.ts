import { describe, expect, it } from 'vitest';
import { addDays, bucketLabel, csvCell, csvName, displayName, formatWhen, initials, localDate, plural, rangeDates, safeUrl, toCsv } from '../src/format';

describe('names', () => {
  it('makes initials in any script', () => {
    expect(initials('Олена Коваль')).toBe('ОК');
    expect(initials('mia')).toBe('M');
    expect(initials('  Leo  de  Baker ')).toBe('LB');
    expect(initials('🙂 Anna')).toBe('A');
    expect(initials('')).toBe('?');
  });
  it('counts in words', () => {
    expect(plural(1, 'session')).toBe('1 session');
    expect(plural(0, 'session')).toBe('0 sessions');
    expect(plural(12345, 'message')).toBe('12,345 messages');
  });
  it('shows the id when there is no name', () => {
    expect(displayName({ id: '5532', name: '  ' })).toBe('5532');
    expect(displayName({ id: '5532', name: 'Olena' })).toBe('Olena');
  });
});

describe('safeUrl', () => {
  it('lets only http(s) through', () => {
    expect(safeUrl('https://example.com/a.pdf')).toBe('https://example.com/a.pdf');
    expect(safeUrl('javascript:alert(1)')).toBeNull();
    expect(safeUrl(' JavaScript:alert(1)')).toBeNull();
    expect(safeUrl('data:text/html,<script>alert(1)</script>')).toBeNull();
    expect(safeUrl('/relative')).toBeNull();
    expect(safeUrl(null)).toBeNull();
  });
});

describe('dates in the bot’s zone', () => {
  const now = new Date('2026-11-27T22:30:00Z');
  it('knows the local date', () => {
    expect(localDate(now, 'UTC')).toBe('2026-11-27');
    expect(localDate(now, 'Europe/Kyiv')).toBe('2026-11-28');
    expect(localDate(now, 'America/New_York')).toBe('2026-11-27');
  });
  it('names the ranges by local dates', () => {
    expect(rangeDates('today', 'Europe/Kyiv', now)).toEqual({ from: '2026-11-28', to: '2026-11-28' });
    expect(rangeDates('7d', 'UTC', now)).toEqual({ from: '2026-11-21', to: '2026-11-27' });
    expect(rangeDates('30d', 'UTC', now)).toEqual({ from: '2026-10-29', to: '2026-11-27' });
    expect(addDays('2026-03-01', -1)).toBe('2026-02-28');
  });
  it('labels buckets in the zone', () => {
    expect(bucketLabel('2026-11-27T22:00:00Z', 'hour', 'Europe/Kyiv')).toBe('28 Nov, 00:00');
    expect(bucketLabel('2026-11-22T22:00:00Z', 'day', 'Europe/Kyiv')).toBe('23 Nov 2026');
    expect(bucketLabel('2026-11-22T22:00:00Z', 'week', 'Europe/Kyiv')).toBe('week of 23 Nov 2026');
  });
  it('shows a time today, a date otherwise', () => {
    expect(formatWhen('2026-11-27T21:05:00Z', 'UTC', now)).toBe('21:05');
    expect(formatWhen('2026-11-26T21:05:00Z', 'UTC', now)).toBe('26 Nov, 21:05');
    expect(formatWhen(null, 'UTC', now)).toBe('');
  });
});

describe('CSV', () => {
  it('quotes what needs it and disarms formulas', () => {
    expect(csvCell('plain')).toBe('plain');
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell('=HYPERLINK("http://x")')).toBe(`"'=HYPERLINK(""http://x"")"`);
    expect(csvCell('+1')).toBe("'+1");
    expect(csvCell('-2')).toBe("'-2");
    expect(csvCell('@me')).toBe("'@me");
    expect(csvCell(12)).toBe('12');
    expect(csvCell(null)).toBe('');
  });
  it('builds a document with CRLF line ends', () => {
    expect(toCsv(['date', 'in'], [['2026-11-27', 3]])).toBe('date,in\r\n2026-11-27,3\r\n');
  });
  it('names the file safely', () => {
    expect(csvName('shop', 'messages', '2026-11-21', '2026-11-27')).toBe('botwatch-shop-messages-2026-11-21_2026-11-27.csv');
    expect(csvName('a/b', 'x', '1', '2')).toBe('botwatch-a_b-x-1_2.csv');
  });
});
